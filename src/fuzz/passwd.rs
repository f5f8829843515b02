//! Passwd-file contents, password fields and SASL responses of any shape: parsing and
//! verification return errors or `false`, never panic.

use crate::auth::{self, SaslServer, StoredPassword, UserDb};

/// The fuzz body: panics only on a real bug.
pub fn run(data: &[u8]) {
    let db = UserDb::parse(data);
    for user in db.users() {
        let _ = user.mail_location("%h/Maildir");
        let _ = user.mail_location("/var/mail/%d/%n");
        let _ = user.plaintext_password();
    }
    if let Ok(field) = std::str::from_utf8(data) {
        // Only cheap schemes get verified: a fuzzer must not spend its time in Argon2.
        if let Ok(p @ (StoredPassword::Plain(_) | StoredPassword::Digest { .. })) =
            StoredPassword::parse(field)
        {
            let _ = p.verify(b"password");
        }
    }
    let _ = auth::sasl_plain_decode(data);
    let _ = auth::sasl_login_decode(data);
    let (mut server, _) = SaslServer::start("LOGIN", None);
    for line in data.split(|&b| b == b'\n') {
        let _ = server.step(line);
    }
}
