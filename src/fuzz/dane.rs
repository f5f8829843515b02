//! Fuzz what DANE reads from the network: a DNS reply (hickory-proto's parser behind
//! `dns::secure::reply_to`), its TLSA records as `tls::dane::Tlsa`, and a server certificate
//! matched against them (x509-parser behind `Tlsa::matches`).

use hickory_resolver::proto::rr::{Name, RecordType};

use crate::outbound::dane::records;
use crate::tls::dane::Tlsa;

/// The fuzz body: panics only on a real bug.
pub fn run(data: &[u8]) {
    let id = data
        .get(..2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .unwrap_or(0);
    let Ok(name) = Name::from_ascii("_25._tcp.mx.example.") else {
        return;
    };
    for rtype in [RecordType::TLSA, RecordType::MX, RecordType::A] {
        if let Some(m) = crate::dns::secure::reply_to(data, id, &name, rtype) {
            let tlsa = records(&m.answers);
            assert!(tlsa.len() <= m.answers.len());
            for t in &tlsa {
                let _ = t.usable();
                let _ = t.matches(data);
                assert!(t.to_string().len() >= 7);
            }
        }
    }
    for (selector, matching) in [(0, 0), (1, 1), (1, 2), (0, 1)] {
        let t = Tlsa {
            usage: 3,
            selector,
            matching,
            data: data.iter().take(64).copied().collect(),
        };
        let _ = t.matches(data);
    }
}
