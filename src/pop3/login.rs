//! Login checks for mpopd over the one authenticator ([`crate::auth::Authenticator`]):
//! passwords (USER/PASS, AUTH PLAIN) through the passwd-file or checkpassword, APOP digests
//! against PLAIN-stored passwords, with the per-IP throttle and failure delays of that module.

use std::net::IpAddr;
use std::sync::Arc;

use anyhow::Result;
use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

use super::driver::{LoginCheck, Verdict};
use super::session::{Credential, Login};
use crate::auth::{throttle_ip, AuthResult, Authenticator};
use crate::config::Config;

/// mpopd's login checker.
#[derive(Debug, Clone)]
pub struct Backend {
    auth: Arc<Authenticator>,
}

impl Backend {
    /// From the shared `[users]` and `[auth]` config keys.
    pub fn from_config(config: &Config) -> Result<Backend> {
        Ok(Backend {
            auth: Arc::new(Authenticator::from_config(config)?),
        })
    }

    /// Wraps an existing authenticator.
    pub fn new(auth: Arc<Authenticator>) -> Backend {
        Backend { auth }
    }

    fn account(&self, result: AuthResult) -> Verdict {
        match result {
            AuthResult::Ok(user) => match self.auth.account(&user) {
                Ok(account) => Verdict::Ok(account),
                Err(e) => Verdict::Temporary(format!("mailbox of {}: {e:#}", user.name)),
            },
            // A locked-out address gets the same answer as a wrong password (RFC 3206 [AUTH]).
            AuthResult::Failed | AuthResult::Throttled(_) => Verdict::Bad,
            AuthResult::TempFail(why) => Verdict::Temporary(why),
        }
    }
}

/// The APOP digest (RFC 1939 §7): lower-case hex MD5 of the greeting's timestamp followed by
/// the shared secret.
pub fn apop_digest(timestamp: &str, secret: &[u8]) -> String {
    let mut h = Md5::new();
    h.update(timestamp.as_bytes());
    h.update(secret);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl LoginCheck for Backend {
    async fn check(&self, login: &Login, peer: Option<IpAddr>) -> Verdict {
        let ip = throttle_ip(peer);
        match &login.credential {
            Credential::Password(pw) => {
                let result = self.auth.check_async(&login.user, pw.as_bytes(), ip).await;
                self.account(result)
            }
            Credential::Apop { timestamp, digest } => {
                let auth = self.auth.clone();
                let user = login.user.clone();
                let (timestamp, digest) = (timestamp.clone(), digest.clone());
                let verdict = tokio::task::spawn_blocking(move || {
                    auth.check_with_plaintext(&user, ip, |secret| {
                        let want = apop_digest(&timestamp, secret);
                        bool::from(want.as_bytes().ct_eq(digest.as_bytes()))
                    })
                })
                .await;
                match verdict {
                    Ok(v) => {
                        if !v.delay.is_zero() {
                            tokio::time::sleep(v.delay).await;
                        }
                        self.account(v.result)
                    }
                    Err(e) => Verdict::Temporary(format!("APOP check failed: {e}")),
                }
            }
        }
    }

    fn apop_available(&self) -> bool {
        self.auth.has_plaintext_passwords()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1939_apop_example() {
        // RFC 1939 §7: the example digest for secret "tanstaaf".
        assert_eq!(
            apop_digest("<1896.697170952@dbc.mtview.ca.us>", b"tanstaaf"),
            "c4c9334bac560ecc979e58001b3e22fb"
        );
    }
}
