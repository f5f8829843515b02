//! Password schemes as Dovecot names and stores them (`{SCHEME}data`), verification in constant
//! time, and hashing for new entries.
//!
//! Supported: `PLAIN` (also `CLEAR`, `CLEARTEXT`, and the `.b64`/`.hex` encodings Dovecot writes),
//! `CRYPT` (dispatching on `$6$`, `$5$`, `$2a$`/`$2b$`/`$2y$`/`$2x$`, as glibc crypt(3) does),
//! `SHA512-CRYPT`, `SHA256-CRYPT`, `BLF-CRYPT`, `ARGON2ID`, `ARGON2I` (PHC strings), and the plain
//! digests `SHA256`, `SHA512`, `SSHA256`, `SSHA512` (base64 by default, `.hex` suffix allowed).
//! A password field without `{SCHEME}` uses Dovecot's passwd-file default, `CRYPT`.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use sha2::Digest as _;
use subtle::ConstantTimeEq;

/// Passwords longer than this are refused without hashing: SHA-crypt's cost grows with the
/// password length, so an unbounded password is a CPU-exhaustion lever.
pub const MAX_PASSWORD_LEN: usize = 1024;
/// Argon2 hashes asking for more memory than this (KiB) are refused (a bad entry must not let one
/// login allocate gigabytes).
pub const MAX_ARGON2_MEMORY_KIB: u32 = 1024 * 1024;
/// Argon2 hashes asking for more passes than this are refused, for the same reason.
pub const MAX_ARGON2_TIME_COST: u32 = 64;
/// bcrypt cost used by [`hash_password`] for `BLF-CRYPT` (Dovecot's default is 5; 10 is the
/// common modern choice).
pub const BCRYPT_COST: u32 = 10;
/// SHA-crypt salt length in characters for new hashes: glibc and Dovecot read at most 16.
pub const SHA_CRYPT_SALT_CHARS: usize = 16;
/// SHA-crypt rounds for new hashes (glibc's default, accepted everywhere).
pub const SHA_CRYPT_ROUNDS: u32 = 5000;

/// A password scheme that [`hash_password`] can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// The password itself (needed for APOP and CRAM-style mechanisms).
    Plain,
    /// glibc SHA-512 crypt, `$6$`, with a 16-character salt.
    Sha512Crypt,
    /// glibc SHA-256 crypt, `$5$`, with a 16-character salt.
    Sha256Crypt,
    /// bcrypt, `$2y$` as Dovecot writes it.
    BlfCrypt,
    /// Argon2id PHC string.
    Argon2id,
    /// Argon2i PHC string.
    Argon2i,
    /// Salted SHA-512, base64 (Dovecot `SSHA512`).
    Ssha512,
}

impl Scheme {
    /// The Dovecot name, as written between braces.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Plain => "PLAIN",
            Scheme::Sha512Crypt => "SHA512-CRYPT",
            Scheme::Sha256Crypt => "SHA256-CRYPT",
            Scheme::BlfCrypt => "BLF-CRYPT",
            Scheme::Argon2id => "ARGON2ID",
            Scheme::Argon2i => "ARGON2I",
            Scheme::Ssha512 => "SSHA512",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scheme {
    type Err = PasswordError;
    /// Parses a Dovecot scheme name (case-insensitive).
    fn from_str(s: &str) -> Result<Scheme, PasswordError> {
        Ok(match s.to_ascii_uppercase().as_str() {
            "PLAIN" | "CLEAR" | "CLEARTEXT" => Scheme::Plain,
            "SHA512-CRYPT" => Scheme::Sha512Crypt,
            "SHA256-CRYPT" => Scheme::Sha256Crypt,
            "BLF-CRYPT" => Scheme::BlfCrypt,
            "ARGON2ID" => Scheme::Argon2id,
            "ARGON2I" => Scheme::Argon2i,
            "SSHA512" => Scheme::Ssha512,
            _ => return Err(PasswordError::UnknownScheme(s.to_string())),
        })
    }
}

/// Why a stored password could not be understood, or a hash not made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordError {
    /// `{NAME}` is not a scheme we know.
    UnknownScheme(String),
    /// The data does not fit the scheme (truncated hash, bad base64, wrong prefix...).
    Malformed(&'static str, String),
    /// The hash asks for more resources than allowed (see the `MAX_*` constants).
    TooCostly(String),
    /// Hashing failed (only from the underlying crates; not expected).
    Hashing(String),
}

impl fmt::Display for PasswordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordError::UnknownScheme(s) => write!(f, "unknown password scheme {{{s}}}"),
            PasswordError::Malformed(scheme, why) => write!(f, "malformed {scheme} hash: {why}"),
            PasswordError::TooCostly(why) => write!(f, "password hash too costly: {why}"),
            PasswordError::Hashing(why) => write!(f, "hashing failed: {why}"),
        }
    }
}

impl std::error::Error for PasswordError {}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum DigestAlg {
    Sha256,
    Sha512,
}

impl DigestAlg {
    fn len(self) -> usize {
        match self {
            DigestAlg::Sha256 => 32,
            DigestAlg::Sha512 => 64,
        }
    }
    fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        match self {
            DigestAlg::Sha256 => {
                let mut h = sha2::Sha256::new();
                for p in parts {
                    h.update(p);
                }
                h.finalize().to_vec()
            }
            DigestAlg::Sha512 => {
                let mut h = sha2::Sha512::new();
                for p in parts {
                    h.update(p);
                }
                h.finalize().to_vec()
            }
        }
    }
}

/// A password as stored in a passwd-file entry, parsed and checked for form.
#[derive(Clone, PartialEq, Eq)]
pub enum StoredPassword {
    /// Plaintext (`{PLAIN}`, decoded from `.b64`/`.hex` if needed).
    Plain(Vec<u8>),
    /// `$5$`/`$6$` SHA-crypt string.
    ShaCrypt(String),
    /// `$2?$` bcrypt string.
    Bcrypt(String),
    /// `$argon2id$`/`$argon2i$` PHC string.
    Argon2(String),
    /// A (salted) SHA-2 digest: `digest(password || salt)`.
    Digest {
        /// Which SHA-2.
        alg_sha512: bool,
        /// The digest.
        digest: Vec<u8>,
        /// The salt (empty for unsalted schemes).
        salt: Vec<u8>,
    },
    /// No password can log in (empty field, `*`, `!`, or a checkpassword-only user).
    Locked,
}

impl fmt::Debug for StoredPassword {
    /// Never prints secrets (plaintext passwords end up in logs otherwise).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoredPassword({})", self.scheme_name())
    }
}

impl StoredPassword {
    /// Parses a passwd-file password field (`{SCHEME}data`, or data in the default scheme CRYPT).
    pub fn parse(field: &str) -> Result<StoredPassword, PasswordError> {
        if field.is_empty() || field == "*" || field == "!" || field.starts_with("!!") {
            return Ok(StoredPassword::Locked);
        }
        let (scheme, data) = match field.strip_prefix('{').and_then(|r| r.split_once('}')) {
            Some((scheme, data)) => (scheme, data),
            None => ("CRYPT", field),
        };
        let upper = scheme.to_ascii_uppercase();
        let (base, encoding) = match upper.rsplit_once('.') {
            Some((b, e)) => (b, Some(e)),
            None => (upper.as_str(), None),
        };
        let decode = |what: &'static str, default_b64: bool| -> Result<Vec<u8>, PasswordError> {
            let enc = encoding.map(|e| e.to_ascii_lowercase());
            match enc.as_deref() {
                Some("b64") | Some("base64") => b64_decode(what, data),
                Some("hex") => hex_decode(what, data),
                None if default_b64 => b64_decode(what, data),
                None => Ok(data.as_bytes().to_vec()),
                Some(other) => Err(PasswordError::Malformed(
                    what,
                    format!("unknown encoding .{other}"),
                )),
            }
        };
        match base {
            "PLAIN" | "CLEAR" | "CLEARTEXT" | "PLAINTEXT" => {
                Ok(StoredPassword::Plain(decode("PLAIN", false)?))
            }
            "CRYPT" => parse_crypt(data),
            "SHA512-CRYPT" => expect_prefix(data, &["$6$"], "SHA512-CRYPT").and_then(parse_crypt),
            "SHA256-CRYPT" => expect_prefix(data, &["$5$"], "SHA256-CRYPT").and_then(parse_crypt),
            "BLF-CRYPT" => expect_prefix(data, &["$2a$", "$2b$", "$2x$", "$2y$"], "BLF-CRYPT")
                .and_then(parse_crypt),
            "ARGON2ID" => expect_prefix(data, &["$argon2id$"], "ARGON2ID").and_then(parse_argon2),
            "ARGON2I" => expect_prefix(data, &["$argon2i$"], "ARGON2I").and_then(parse_argon2),
            "SHA256" | "SHA512" | "SSHA256" | "SSHA512" => {
                let alg = if base.ends_with("512") {
                    DigestAlg::Sha512
                } else {
                    DigestAlg::Sha256
                };
                let name = match base {
                    "SHA256" => "SHA256",
                    "SHA512" => "SHA512",
                    "SSHA256" => "SSHA256",
                    _ => "SSHA512",
                };
                let raw = decode(name, true)?;
                let salted = base.starts_with("SSHA");
                if raw.len() < alg.len() || (!salted && raw.len() != alg.len()) {
                    return Err(PasswordError::Malformed(name, "wrong digest length".into()));
                }
                let (digest, salt) = raw.split_at(alg.len());
                Ok(StoredPassword::Digest {
                    alg_sha512: alg == DigestAlg::Sha512,
                    digest: digest.to_vec(),
                    salt: salt.to_vec(),
                })
            }
            _ => Err(PasswordError::UnknownScheme(scheme.to_string())),
        }
    }

    /// The scheme's Dovecot name (for messages; never the secret).
    pub fn scheme_name(&self) -> &'static str {
        match self {
            StoredPassword::Plain(_) => "PLAIN",
            StoredPassword::ShaCrypt(s) if s.starts_with("$5$") => "SHA256-CRYPT",
            StoredPassword::ShaCrypt(_) => "SHA512-CRYPT",
            StoredPassword::Bcrypt(_) => "BLF-CRYPT",
            StoredPassword::Argon2(s) if s.starts_with("$argon2i$") => "ARGON2I",
            StoredPassword::Argon2(_) => "ARGON2ID",
            StoredPassword::Digest {
                alg_sha512, salt, ..
            } => match (*alg_sha512, salt.is_empty()) {
                (true, true) => "SHA512",
                (true, false) => "SSHA512",
                (false, true) => "SHA256",
                (false, false) => "SSHA256",
            },
            StoredPassword::Locked => "LOCKED",
        }
    }

    /// The plaintext password, only for the PLAIN scheme (APOP needs it, RFC 1939 section 7).
    pub fn plaintext(&self) -> Option<&[u8]> {
        match self {
            StoredPassword::Plain(p) => Some(p),
            _ => None,
        }
    }

    /// Whether `password` matches, in time that does not depend on how much of it matches.
    pub fn verify(&self, password: &[u8]) -> bool {
        if password.len() > MAX_PASSWORD_LEN {
            return false;
        }
        match self {
            StoredPassword::Plain(p) => {
                // Compare digests so neither content nor length leaks through timing.
                let a = DigestAlg::Sha256.digest(&[p]);
                let b = DigestAlg::Sha256.digest(&[password]);
                a.ct_eq(&b).into()
            }
            StoredPassword::ShaCrypt(s) => {
                use sha_crypt::PasswordVerifier as _;
                match sha_crypt::PasswordHashRef::new(s) {
                    Ok(h) => sha_crypt::ShaCrypt::default()
                        .verify_password(password, h)
                        .is_ok(),
                    Err(_) => false,
                }
            }
            // bcrypt::verify compares with subtle; it truncates at 72 bytes like crypt(3).
            StoredPassword::Bcrypt(s) => bcrypt::verify(password, s).unwrap_or(false),
            StoredPassword::Argon2(s) => {
                use argon2::PasswordVerifier as _;
                match argon2::PasswordHash::new(s) {
                    // The output comparison inside password-hash is constant-time.
                    Ok(h) => argon2::Argon2::default()
                        .verify_password(password, &h)
                        .is_ok(),
                    Err(_) => false,
                }
            }
            StoredPassword::Digest {
                alg_sha512,
                digest,
                salt,
            } => {
                let alg = if *alg_sha512 {
                    DigestAlg::Sha512
                } else {
                    DigestAlg::Sha256
                };
                alg.digest(&[password, salt]).ct_eq(digest).into()
            }
            StoredPassword::Locked => false,
        }
    }
}

fn expect_prefix<'a>(
    data: &'a str,
    prefixes: &[&str],
    scheme: &'static str,
) -> Result<&'a str, PasswordError> {
    if prefixes.iter().any(|p| data.starts_with(p)) {
        Ok(data)
    } else {
        Err(PasswordError::Malformed(
            scheme,
            format!("expected it to start with {}", prefixes.join(" or ")),
        ))
    }
}

/// crypt(3) strings: the prefix picks the algorithm, as in glibc.
fn parse_crypt(data: &str) -> Result<StoredPassword, PasswordError> {
    if data.starts_with("$6$") || data.starts_with("$5$") {
        let name = if data.starts_with("$6$") {
            "SHA512-CRYPT"
        } else {
            "SHA256-CRYPT"
        };
        let h = sha_crypt::PasswordHashRef::new(data)
            .map_err(|e| PasswordError::Malformed(name, e.to_string()))?;
        // `$id$[rounds=N$]salt$hash`: check the shape so a truncated line is reported at load.
        let fields: Vec<&str> = h.fields().map(|f| f.as_str()).collect();
        let (salt, hash) = match fields.as_slice() {
            [r, salt, hash] if r.starts_with("rounds=") => {
                let n: u32 = r["rounds=".len()..]
                    .parse()
                    .map_err(|_| PasswordError::Malformed(name, "bad rounds".into()))?;
                if !(sha_crypt::Params::ROUNDS_MIN..=sha_crypt::Params::ROUNDS_MAX).contains(&n) {
                    return Err(PasswordError::Malformed(name, "rounds out of range".into()));
                }
                (*salt, *hash)
            }
            [salt, hash] => (*salt, *hash),
            _ => {
                return Err(PasswordError::Malformed(
                    name,
                    "wrong number of fields".into(),
                ))
            }
        };
        let want = if name == "SHA512-CRYPT" { 86 } else { 43 };
        if salt.len() > SHA_CRYPT_SALT_CHARS || hash.len() != want {
            return Err(PasswordError::Malformed(
                name,
                "wrong salt or hash length".into(),
            ));
        }
        return Ok(StoredPassword::ShaCrypt(data.to_string()));
    }
    if ["$2a$", "$2b$", "$2x$", "$2y$"]
        .iter()
        .any(|p| data.starts_with(p))
    {
        // `$2y$NN$` + 22 salt + 31 hash characters.
        let ok = data.len() == 60
            && data.is_ascii()
            && data[4..6].bytes().all(|b| b.is_ascii_digit())
            && &data[6..7] == "$";
        if !ok {
            return Err(PasswordError::Malformed(
                "BLF-CRYPT",
                "expected 60 characters $2y$NN$...".into(),
            ));
        }
        return Ok(StoredPassword::Bcrypt(data.to_string()));
    }
    if data.starts_with("$argon2") {
        return parse_argon2(data);
    }
    if data.starts_with("$1$") {
        return Err(PasswordError::UnknownScheme("MD5-CRYPT".into()));
    }
    if let Some(rest) = data.strip_prefix('$') {
        let id = rest.split('$').next().unwrap_or("");
        return Err(PasswordError::UnknownScheme(format!("CRYPT ${id}$")));
    }
    Err(PasswordError::UnknownScheme("CRYPT (DES)".into()))
}

fn parse_argon2(data: &str) -> Result<StoredPassword, PasswordError> {
    let name = if data.starts_with("$argon2i$") {
        "ARGON2I"
    } else {
        "ARGON2ID"
    };
    let h = argon2::PasswordHash::new(data)
        .map_err(|e| PasswordError::Malformed(name, e.to_string()))?;
    if !matches!(h.algorithm.as_str(), "argon2id" | "argon2i") {
        return Err(PasswordError::UnknownScheme(
            h.algorithm.as_str().to_uppercase(),
        ));
    }
    let params =
        argon2::Params::try_from(&h).map_err(|e| PasswordError::Malformed(name, e.to_string()))?;
    if params.m_cost() > MAX_ARGON2_MEMORY_KIB || params.t_cost() > MAX_ARGON2_TIME_COST {
        return Err(PasswordError::TooCostly(format!(
            "m={} t={}",
            params.m_cost(),
            params.t_cost()
        )));
    }
    if h.hash.is_none() {
        return Err(PasswordError::Malformed(name, "no hash".into()));
    }
    Ok(StoredPassword::Argon2(data.to_string()))
}

fn b64_decode(what: &'static str, data: &str) -> Result<Vec<u8>, PasswordError> {
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| PasswordError::Malformed(what, format!("bad base64: {e}")))
}

fn hex_decode(what: &'static str, data: &str) -> Result<Vec<u8>, PasswordError> {
    let data = data.trim().as_bytes();
    if !data.len().is_multiple_of(2) {
        return Err(PasswordError::Malformed(what, "odd hex length".into()));
    }
    data.chunks(2)
        .map(|pair| {
            let hi = (pair[0] as char).to_digit(16);
            let lo = (pair[1] as char).to_digit(16);
            match (hi, lo) {
                (Some(h), Some(l)) => Ok((h * 16 + l) as u8),
                _ => Err(PasswordError::Malformed(what, "bad hex".into())),
            }
        })
        .collect()
}

fn random_bytes<const N: usize>() -> [u8; N] {
    rand::random::<[u8; N]>()
}

/// Hashes `password` in `scheme`, returning the passwd-file field with its `{SCHEME}` prefix, in
/// the form Dovecot writes and accepts (`doveadm pw -t` verifies it).
pub fn hash_password(scheme: Scheme, password: &[u8]) -> Result<String, PasswordError> {
    if password.len() > MAX_PASSWORD_LEN {
        return Err(PasswordError::Hashing(format!(
            "password longer than {MAX_PASSWORD_LEN} bytes"
        )));
    }
    let data = match scheme {
        Scheme::Plain => {
            // A passwd-file field cannot hold ':' or line ends; base64 then, as Dovecot allows.
            let safe = std::str::from_utf8(password)
                .ok()
                .filter(|s| !s.contains([':', '\n', '\r', '\0']) && !s.starts_with('{'));
            return Ok(match safe {
                Some(s) => format!("{{PLAIN}}{s}"),
                None => format!(
                    "{{PLAIN.b64}}{}",
                    base64::engine::general_purpose::STANDARD.encode(password)
                ),
            });
        }
        Scheme::Sha512Crypt | Scheme::Sha256Crypt => {
            use sha_crypt::CustomizedPasswordHasher as _;
            let alg = if scheme == Scheme::Sha512Crypt {
                sha_crypt::Algorithm::Sha512Crypt
            } else {
                sha_crypt::Algorithm::Sha256Crypt
            };
            let params = sha_crypt::Params::new(SHA_CRYPT_ROUNDS)
                .map_err(|e| PasswordError::Hashing(e.to_string()))?;
            // 12 random bytes encode to exactly 16 salt characters: the crate's own salts are 22
            // characters, which glibc and Dovecot cut to 16 and then fail to verify.
            let salt = random_bytes::<12>();
            let h = sha_crypt::ShaCrypt::new(alg, params)
                .hash_password_customized(password, &salt, None, None, params)
                .map_err(|e| PasswordError::Hashing(e.to_string()))?;
            h.to_string()
        }
        Scheme::BlfCrypt => bcrypt::hash_with_salt(password, BCRYPT_COST, random_bytes::<16>())
            .map_err(|e| PasswordError::Hashing(e.to_string()))?
            .format_for_version(bcrypt::Version::TwoY),
        Scheme::Argon2id | Scheme::Argon2i => {
            use argon2::PasswordHasher as _;
            let alg = if scheme == Scheme::Argon2id {
                argon2::Algorithm::Argon2id
            } else {
                argon2::Algorithm::Argon2i
            };
            let salt = argon2::password_hash::SaltString::encode_b64(&random_bytes::<16>())
                .map_err(|e| PasswordError::Hashing(e.to_string()))?;
            argon2::Argon2::new(alg, argon2::Version::V0x13, argon2::Params::default())
                .hash_password(password, &salt)
                .map_err(|e| PasswordError::Hashing(e.to_string()))?
                .to_string()
        }
        Scheme::Ssha512 => {
            let salt = random_bytes::<8>();
            let mut raw = DigestAlg::Sha512.digest(&[password, &salt]);
            raw.extend_from_slice(&salt);
            base64::engine::general_purpose::STANDARD.encode(raw)
        }
    };
    Ok(format!("{{{}}}{}", scheme.name(), data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_generated_scheme_round_trips() {
        for scheme in [
            Scheme::Plain,
            Scheme::Sha512Crypt,
            Scheme::Sha256Crypt,
            Scheme::BlfCrypt,
            Scheme::Argon2id,
            Scheme::Argon2i,
            Scheme::Ssha512,
        ] {
            let field = hash_password(scheme, b"s3cret").unwrap();
            assert!(
                field.starts_with(&format!("{{{}}}", scheme.name())),
                "{field}"
            );
            let stored = StoredPassword::parse(&field).unwrap();
            assert_eq!(stored.scheme_name(), scheme.name());
            assert!(stored.verify(b"s3cret"), "{field}");
            assert!(!stored.verify(b"s3creT"), "{field}");
            assert!(!stored.verify(b""), "{field}");
        }
    }

    #[test]
    fn sha_crypt_salt_is_16_chars() {
        for scheme in [Scheme::Sha512Crypt, Scheme::Sha256Crypt] {
            let field = hash_password(scheme, b"x").unwrap();
            let parts: Vec<&str> = field.split('$').collect();
            // {SCHEME} $ 6 $ rounds=5000 $ salt $ hash
            assert_eq!(parts.len(), 5, "{field}");
            assert_eq!(parts[3].len(), SHA_CRYPT_SALT_CHARS, "{field}");
        }
    }

    #[test]
    fn plain_with_separator_is_encoded() {
        let field = hash_password(Scheme::Plain, b"a:b\nc").unwrap();
        assert!(field.starts_with("{PLAIN.b64}"), "{field}");
        let stored = StoredPassword::parse(&field).unwrap();
        assert_eq!(stored.plaintext(), Some(&b"a:b\nc"[..]));
        assert!(stored.verify(b"a:b\nc"));
    }

    #[test]
    fn plain_encodings_and_aliases() {
        for f in [
            "{PLAIN}secret",
            "{plain}secret",
            "{CLEAR}secret",
            "{CLEARTEXT}secret",
            "{PLAIN.b64}c2VjcmV0",
            "{PLAIN.BASE64}c2VjcmV0",
            "{PLAIN.HEX}736563726574",
        ] {
            let s = StoredPassword::parse(f).unwrap();
            assert!(s.verify(b"secret"), "{f}");
            assert!(!s.verify(b"secreT"), "{f}");
            assert_eq!(s.plaintext(), Some(&b"secret"[..]), "{f}");
        }
    }

    #[test]
    fn locked_fields_never_verify() {
        for f in ["", "*", "!", "!!$6$x"] {
            let s = StoredPassword::parse(f).unwrap();
            assert_eq!(s, StoredPassword::Locked);
            assert!(!s.verify(b""));
            assert!(!s.verify(b"*"));
        }
    }

    #[test]
    fn malformed_and_unknown_are_errors_not_panics() {
        let cases = [
            "{FOO}bar",
            "{}x",
            "{MD5-CRYPT}$1$abc$def",
            "$1$abc$def",
            "abcdefghijklm",
            "{SHA512-CRYPT}$5$abc$def",
            "{SHA512-CRYPT}$6$",
            "{SHA512-CRYPT}$6$salt",
            "{SHA512-CRYPT}$6$rounds=10$salt$hash",
            "{SHA512-CRYPT}$6$rounds=x$salt$hash",
            "{SHA512-CRYPT}$6$saltsaltsaltsaltsalt$tooshort",
            "{BLF-CRYPT}$2y$05$short",
            "{BLF-CRYPT}$2y$ab$naB4HxlT/Ydp/SAh9QiFa.mL/UhIVUBRKqKKPPLJNDK0nOiaAw2Jy",
            "{BLF-CRYPT}$2y$05$naB4HxlT/Ydp/SAh9QiFa.mL/UhIVUBRKqKKPPLJNDK0nOiaAw2Jyé",
            "{ARGON2ID}$argon2id$v=19$m=65536",
            "{ARGON2ID}$argon2id$v=19$m=99999999,t=3,p=1$3L/3zyvERYnBO484duiOcg$XsFBQVFm6U+YGMguvczOlqLI0UhtJIcOP7XJPVNA1jk",
            "{ARGON2ID}$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
            "{PLAIN.b64}!!!",
            "{PLAIN.hex}abc",
            "{PLAIN.hex}zz",
            "{PLAIN.rot13}x",
            "{SSHA512}AAAA",
            "{SHA256}c2hvcnQ=",
            "{CRYPT}$y$j9T$salt$hash",
            "{CRYPT}$",
        ];
        for f in cases {
            assert!(StoredPassword::parse(f).is_err(), "{f} should not parse");
        }
        assert!(matches!(
            StoredPassword::parse("{FOO}bar"),
            Err(PasswordError::UnknownScheme(s)) if s == "FOO"
        ));
    }

    #[test]
    fn overlong_password_is_refused_cheaply() {
        let field = hash_password(Scheme::Sha512Crypt, b"x").unwrap();
        let s = StoredPassword::parse(&field).unwrap();
        assert!(!s.verify(&vec![b'x'; MAX_PASSWORD_LEN + 1]));
        assert!(hash_password(Scheme::Plain, &vec![b'x'; MAX_PASSWORD_LEN + 1]).is_err());
        let long = vec![b'y'; MAX_PASSWORD_LEN];
        let field = hash_password(Scheme::Sha512Crypt, &long).unwrap();
        assert!(StoredPassword::parse(&field).unwrap().verify(&long));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let s = StoredPassword::parse("{PLAIN}hunter2").unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn scheme_names_parse_case_insensitively() {
        assert_eq!(
            "sha512-crypt".parse::<Scheme>().unwrap(),
            Scheme::Sha512Crypt
        );
        assert_eq!("ARGON2ID".parse::<Scheme>().unwrap(), Scheme::Argon2id);
        assert!("MD5".parse::<Scheme>().is_err());
    }
}
