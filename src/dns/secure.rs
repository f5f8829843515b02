//! DNS look-ups whose answer says whether it was DNSSEC-validated, for DANE (RFC 7672 §2.1).
//!
//! mailkit does not validate DNSSEC itself: like Postfix (`smtp_dns_support_level = dnssec`) it
//! trusts the AD ("authentic data") bit of a validating resolver. Every query is sent with AD
//! set, which asks a validating resolver to report it (RFC 6840 §5.7), and with EDNS(0) so
//! large answers fit (RFC 6891). The query is a raw one (hickory-proto's message format over a
//! UDP socket, TCP when the answer is truncated, RFC 7766 §5): hickory-resolver's own look-ups
//! neither set AD nor keep it through its cache. The AD bit is only as trustworthy as the path
//! to the resolver, so it should run on this host (RFC 6698 §4.1: "a secure channel").
//!
//! The server is the one the other look-ups use: `resolver =`/`--resolver`, else the first
//! `nameserver` of `/etc/resolv.conf` ([`super::resolver_setup`]).

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::{DnsError, QUERY_ATTEMPTS, QUERY_TIMEOUT};

/// EDNS(0) UDP payload size offered (the DNS flag day 2020 value, avoiding fragmentation).
const EDNS_PAYLOAD: u16 = 1232;

/// What one validated-or-not look-up said.
#[derive(Clone, Debug)]
pub struct SecureAnswer {
    /// The resolver set AD: it validated the answer (or the proof of non-existence) with DNSSEC.
    pub authenticated: bool,
    /// The name does not exist (NXDOMAIN).
    pub nxdomain: bool,
    /// The answer records of the queried type (RRSIGs and CNAMEs left out).
    pub records: Vec<Record>,
}

/// A resolver asked for AD-flagged answers.
#[derive(Clone, Debug)]
pub struct SecureResolver {
    server: SocketAddr,
    timeout: Duration,
}

impl SecureResolver {
    /// Queries go to `server`, else to the system's first name server.
    pub fn new(server: Option<SocketAddr>) -> Result<SecureResolver, String> {
        let server = match server {
            Some(s) => s,
            None => {
                let (config, _) = super::resolver_setup(None)?;
                let ns = config
                    .name_servers
                    .first()
                    .ok_or("no name server in the system resolver configuration")?;
                SocketAddr::new(ns.ip, super::DEFAULT_DNS_PORT)
            }
        };
        Ok(SecureResolver {
            server,
            timeout: QUERY_TIMEOUT,
        })
    }

    /// The server asked.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// Looks up `name`/`rtype`. NXDOMAIN and NODATA are answers (empty records, still with their
    /// AD bit: a signed proof of non-existence is "secure", RFC 7672 §2.1.1); SERVFAIL (what a
    /// validating resolver answers for a bogus zone), other errors and timeouts are temporary.
    pub async fn lookup(&self, name: &str, rtype: RecordType) -> Result<SecureAnswer, DnsError> {
        let fq = if name.ends_with('.') {
            name.to_string()
        } else {
            format!("{name}.")
        };
        let qname = Name::from_ascii(&fq).map_err(|_| DnsError::BadName(name.to_string()))?;
        let mut last = String::from("no answer");
        for _ in 0..QUERY_ATTEMPTS {
            match tokio::time::timeout(self.timeout, self.exchange(&qname, rtype)).await {
                Ok(Ok(reply)) => return answer(name, rtype, reply),
                Ok(Err(e)) => last = e,
                Err(_) => last = format!("timed out after {:?}", self.timeout),
            }
        }
        Err(DnsError::Temporary(format!(
            "{name} {rtype}: {last} (server {})",
            self.server
        )))
    }

    /// One query and its reply: UDP, again over TCP when truncated.
    async fn exchange(&self, qname: &Name, rtype: RecordType) -> Result<Message, String> {
        let id: u16 = rand::random();
        let query = query_bytes(id, qname, rtype)?;
        let local: SocketAddr = if self.server.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(local).await.map_err(|e| e.to_string())?;
        sock.connect(self.server).await.map_err(|e| e.to_string())?;
        sock.send(&query).await.map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 65535];
        let reply = loop {
            let n = sock.recv(&mut buf).await.map_err(|e| e.to_string())?;
            // A datagram that is not the reply to this query (a late one, spoofing) is ignored.
            if let Some(m) = reply_to(&buf[..n], id, qname, rtype) {
                break m;
            }
        };
        if !reply.metadata.truncation {
            return Ok(reply);
        }
        let mut tcp = TcpStream::connect(self.server)
            .await
            .map_err(|e| e.to_string())?;
        let len = u16::try_from(query.len()).map_err(|e| e.to_string())?;
        let mut framed = len.to_be_bytes().to_vec();
        framed.extend_from_slice(&query);
        tcp.write_all(&framed).await.map_err(|e| e.to_string())?;
        let mut len = [0u8; 2];
        tcp.read_exact(&mut len).await.map_err(|e| e.to_string())?;
        let mut data = vec![0u8; usize::from(u16::from_be_bytes(len))];
        tcp.read_exact(&mut data).await.map_err(|e| e.to_string())?;
        reply_to(&data, id, qname, rtype).ok_or_else(|| "bad reply over TCP".to_string())
    }
}

/// The wire form of a query for `qname`/`rtype` with RD, AD (RFC 6840 §5.7) and EDNS(0).
pub fn query_bytes(id: u16, qname: &Name, rtype: RecordType) -> Result<Vec<u8>, String> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.metadata.authentic_data = true;
    m.add_query(Query::query(qname.clone(), rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    m.set_edns(edns);
    m.to_vec().map_err(|e| format!("encoding the query: {e}"))
}

/// `bytes` parsed, when it is a reply to query `id` for `qname`/`rtype`.
pub fn reply_to(bytes: &[u8], id: u16, qname: &Name, rtype: RecordType) -> Option<Message> {
    let m = Message::from_vec(bytes).ok()?;
    let q = m.queries.first()?;
    // hickory's Name compares case-insensitively (RFC 4343).
    (m.metadata.id == id
        && m.metadata.message_type == MessageType::Response
        && q.query_type() == rtype
        && q.name() == qname)
        .then_some(m)
}

/// The [`SecureAnswer`] of a reply.
fn answer(name: &str, rtype: RecordType, reply: Message) -> Result<SecureAnswer, DnsError> {
    let nxdomain = match reply.metadata.response_code {
        ResponseCode::NoError => false,
        ResponseCode::NXDomain => true,
        other => {
            return Err(DnsError::Temporary(format!(
                "{name} {rtype}: {other} (a validating resolver says SERVFAIL for bogus DNSSEC)"
            )))
        }
    };
    let records = reply
        .answers
        .into_iter()
        .filter(|r| r.record_type() == rtype && !matches!(r.data, RData::CNAME(_)))
        .collect();
    Ok(SecureAnswer {
        authenticated: reply.metadata.authentic_data,
        nxdomain,
        records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_asks_for_ad_and_parses_back() {
        let name = Name::from_ascii("_25._tcp.mx.example.").unwrap();
        let bytes = query_bytes(7, &name, RecordType::TLSA).unwrap();
        let m = Message::from_vec(&bytes).unwrap();
        assert!(m.metadata.authentic_data && m.metadata.recursion_desired);
        assert!(m.edns.is_some());
        // A query is not a reply to itself; a reply with another id is not ours.
        assert!(reply_to(&bytes, 7, &name, RecordType::TLSA).is_none());
        let mut r = m.clone();
        r.metadata.message_type = MessageType::Response;
        let reply = r.to_vec().unwrap();
        assert!(reply_to(&reply, 7, &name, RecordType::TLSA).is_some());
        assert!(reply_to(&reply, 8, &name, RecordType::TLSA).is_none());
        assert!(reply_to(&reply, 7, &name, RecordType::A).is_none());
        assert!(reply_to(b"\x00\x07garbage", 7, &name, RecordType::A).is_none());
    }
}
