//! DSNs from `mailkit::relay::dsn::build`, parsed by a real independent MIME parser: python3's
//! `email` package (`email.message_from_bytes(..., policy=email.policy.default)`), checked field
//! by field. python exposes `message/delivery-status` as a list of header blocks, one per
//! message and per recipient (RFC 3464 §2.1), and `message/rfc822` as an inner message.

mod common;

use std::process::Command;

use mailkit::relay::dsn::{
    build, DsnAction, DsnInput, DsnRecipient, DsnReturn, MAX_RETURNED_MESSAGE,
};
use serde_json::Value;

/// Longest a python run may take (it takes milliseconds); `timeout` kills it beyond.
const PYTHON_TIMEOUT_SECS: &str = "60";

/// Parses a DSN with python's email package and returns what it saw as JSON.
const PARSE: &str = r#"
import sys, json, email, email.policy, email.utils
raw = sys.stdin.buffer.read()
m = email.message_from_bytes(raw, policy=email.policy.default)
def fix(s):
    # The bytes parser keeps raw UTF-8 (RFC 6532) of structured headers as surrogate escapes.
    return s.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
def hdrs(msg):
    return [[k, fix(str(v))] for k, v in msg.items()]
out = {
    "content_type": m.get_content_type(),
    "report_type": m.get_param("report-type"),
    "headers": hdrs(m),
    "defects": [type(d).__name__ for d in m.defects],
    "date": int(m["Date"].datetime.timestamp()),
    "from": fix(m["From"].addresses[0].addr_spec),
    "to": fix(m["To"].addresses[0].addr_spec),
    "is_multipart": m.is_multipart(),
}
parts = m.get_payload()
out["parts"] = [p.get_content_type() for p in parts]
out["part_defects"] = [[type(d).__name__ for d in p.defects] for p in parts]
out["part1"] = parts[0].get_content()
out["part1_charset"] = parts[0].get_content_charset()
blocks = parts[1].get_payload()
out["blocks"] = [hdrs(b) for b in blocks]
dates = []
for b in blocks:
    d = {}
    for k, v in b.items():
        if k.endswith("-Date") or k == "Will-Retry-Until":
            d[k] = int(email.utils.parsedate_to_datetime(str(v)).timestamp())
    dates.append(d)
out["block_dates"] = dates
p3 = parts[2]
out["part3_cte"] = p3.get("Content-Transfer-Encoding")
if p3.get_content_type() == "message/rfc822":
    inner = p3.get_payload(0)
    out["inner_subject"] = fix(str(inner["Subject"]))
    out["inner_headers"] = hdrs(inner)
    out["inner_body"] = inner.get_payload(decode=True).decode("utf-8", "replace")
else:
    out["part3_text"] = p3.get_payload(decode=True).decode("utf-8", "replace")
print(json.dumps(out))
"#;

fn parse(dsn: &[u8]) -> Value {
    let out = common::run_with_input(
        Command::new("timeout").args([PYTHON_TIMEOUT_SECS, "/usr/bin/python3", "-c", PARSE]),
        dsn,
    );
    assert!(
        out.status.success(),
        "python failed: {}\n--- DSN ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(dsn)
    );
    serde_json::from_slice(&out.stdout).expect("python printed JSON")
}

/// The value of header `name` in a `[[name, value], ...]` list (first one).
fn field<'a>(fields: &'a Value, name: &str) -> Option<&'a str> {
    fields
        .as_array()
        .expect("field list")
        .iter()
        .find_map(|kv| {
            (kv[0].as_str()?.eq_ignore_ascii_case(name)).then(|| kv[1].as_str().expect("str"))
        })
}

fn count(fields: &Value, name: &str) -> usize {
    fields
        .as_array()
        .expect("field list")
        .iter()
        .filter(|kv| kv[0].as_str().is_some_and(|k| k.eq_ignore_ascii_case(name)))
        .count()
}

const ARRIVAL: u64 = 1_763_900_000;
const NOW: u64 = 1_763_914_400;

const ORIGINAL: &[u8] = b"From: Alice <alice@example.org>\n\
To: bob@example.net, carol@example.net\n\
Subject: Quarterly numbers\n\
Message-ID: <q3@example.org>\n\
\n\
Hello Bob,\n\
the numbers are attached.\n\
--\n\
Alice\n";

fn recipient(address: &str, action: DsnAction, status: &str) -> DsnRecipient {
    DsnRecipient {
        address: address.to_string(),
        orcpt: None,
        action,
        status: status.to_string(),
        diagnostic: None,
        remote_mta: None,
        last_attempt: None,
        will_retry_until: None,
    }
}

#[test]
fn failure_report_with_full_message() {
    let long_reply = "550-5.1.1 The email account that you tried to reach does not exist. Please try\r\n\
         550-5.1.1 double-checking the recipient's email address for typos or\r\n\
         550 5.1.1 unnecessary spaces. https://support.example.test/mail/?p=NoSuchUser x1si - gsmtp";
    let mut bob = recipient("bob@example.net", DsnAction::Failed, "");
    bob.status = mailkit::outbound::failure::status_of_reply(550, long_reply);
    bob.orcpt = Some("rfc822;Bob+2BTag@example.net".to_string());
    bob.diagnostic = Some(long_reply.to_string());
    bob.remote_mta = Some("mx1.example.net".to_string());
    bob.last_attempt = Some(NOW - 5);
    let mut carol = recipient("carol@example.net", DsnAction::Failed, "5.2.2");
    carol.diagnostic = Some("552 5.2.2 <carol@example.net>: mailbox full".to_string());
    carol.remote_mta = Some("mx2.example.net".to_string());
    carol.last_attempt = Some(NOW);
    let input = DsnInput {
        reporting_mta: "relay.example.org",
        postmaster_domain: "example.org",
        envid: Some("QQ+2B314"),
        arrival: ARRIVAL,
        original_sender: "alice@example.org",
        recipients: vec![bob, carol],
        ret: DsnReturn::Full,
        message: ORIGINAL,
        now: NOW,
    };
    let raw = build(&input);
    let p = parse(&raw);

    assert_eq!(p["content_type"], "multipart/report");
    assert_eq!(p["report_type"], "delivery-status");
    assert_eq!(p["defects"], Value::Array(vec![]), "{p}");
    assert_eq!(
        p["parts"],
        serde_json::json!(["text/plain", "message/delivery-status", "message/rfc822"])
    );
    for d in p["part_defects"].as_array().unwrap() {
        assert_eq!(d, &Value::Array(vec![]), "{p}");
    }
    let h = &p["headers"];
    assert_eq!(p["from"], "MAILER-DAEMON@relay.example.org");
    assert_eq!(p["to"], "alice@example.org");
    assert_eq!(
        field(h, "Subject"),
        Some("Undelivered Mail Returned to Sender")
    );
    assert_eq!(field(h, "Auto-Submitted"), Some("auto-replied"));
    assert_eq!(field(h, "MIME-Version"), Some("1.0"));
    assert_eq!(p["date"].as_u64(), Some(NOW));
    let mid = field(h, "Message-ID").expect("Message-ID");
    assert!(
        mid.starts_with('<') && mid.ends_with("@relay.example.org>"),
        "{mid}"
    );
    for name in [
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "MIME-Version",
    ] {
        assert_eq!(count(h, name), 1, "{name}");
    }

    // Part 2: one per-message block and one block per recipient.
    let blocks = p["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 3, "{p}");
    let m = &blocks[0];
    assert_eq!(field(m, "Reporting-MTA"), Some("dns; relay.example.org"));
    assert_eq!(field(m, "Original-Envelope-Id"), Some("QQ+314"));
    assert_eq!(p["block_dates"][0]["Arrival-Date"].as_u64(), Some(ARRIVAL));

    let b = &blocks[1];
    assert_eq!(field(b, "Final-Recipient"), Some("rfc822; bob@example.net"));
    assert_eq!(
        field(b, "Original-Recipient"),
        Some("rfc822; Bob+Tag@example.net")
    );
    assert_eq!(field(b, "Action"), Some("failed"));
    assert_eq!(field(b, "Status"), Some("5.1.1"));
    assert_eq!(field(b, "Remote-MTA"), Some("dns; mx1.example.net"));
    // The multi-line reply, folded to one line; python unfolds the field.
    assert_eq!(
        field(b, "Diagnostic-Code"),
        Some(
            "smtp; 550-5.1.1 The email account that you tried to reach does not exist. \
             Please try 550-5.1.1 double-checking the recipient's email address for typos or \
             550 5.1.1 unnecessary spaces. https://support.example.test/mail/?p=NoSuchUser x1si - gsmtp"
        )
    );
    assert_eq!(
        p["block_dates"][1]["Last-Attempt-Date"].as_u64(),
        Some(NOW - 5)
    );
    assert_eq!(field(b, "Will-Retry-Until"), None);

    let c = &blocks[2];
    assert_eq!(
        field(c, "Final-Recipient"),
        Some("rfc822; carol@example.net")
    );
    assert_eq!(field(c, "Original-Recipient"), None);
    assert_eq!(field(c, "Action"), Some("failed"));
    assert_eq!(field(c, "Status"), Some("5.2.2"));
    assert_eq!(field(c, "Remote-MTA"), Some("dns; mx2.example.net"));
    assert_eq!(
        field(c, "Diagnostic-Code"),
        Some("smtp; 552 5.2.2 <carol@example.net>: mailbox full")
    );
    assert_eq!(p["block_dates"][2]["Last-Attempt-Date"].as_u64(), Some(NOW));

    // Part 3: the original message, unchanged.
    assert_eq!(p["inner_subject"], "Quarterly numbers");
    assert_eq!(
        field(&p["inner_headers"], "Message-ID"),
        Some("<q3@example.org>")
    );
    assert_eq!(
        p["inner_body"].as_str().unwrap().replace("\r\n", "\n"),
        "Hello Bob,\nthe numbers are attached.\n--\nAlice\n"
    );
    assert_eq!(p["part3_cte"], "7bit");

    // Part 1: plain English naming each recipient and the reason.
    let text = p["part1"].as_str().unwrap();
    assert_eq!(p["part1_charset"], "utf-8");
    assert!(text.contains("relay.example.org"), "{text}");
    assert!(
        text.contains("<bob@example.net>: delivery failed"),
        "{text}"
    );
    assert!(
        text.contains("host mx1.example.net said: 550-5.1.1 The email account"),
        "{text}"
    );
    assert!(
        text.contains("<carol@example.net>: delivery failed"),
        "{text}"
    );
    assert!(text.contains("mailbox full"), "{text}");
    assert!(text.contains("attached below"), "{text}");
}

#[test]
fn delay_warning_returns_headers_only() {
    let until = ARRIVAL + 5 * 86400;
    let mut bob = recipient("bob@example.net", DsnAction::Delayed, "");
    bob.status =
        mailkit::outbound::failure::status_of_reply(451, "451 4.7.1 Greylisted, try again later");
    bob.diagnostic = Some("451 4.7.1 Greylisted, try again later".to_string());
    bob.remote_mta = Some("mx1.example.net".to_string());
    bob.last_attempt = Some(NOW);
    bob.will_retry_until = Some(until);
    let mut carol = recipient("carol@example.net", DsnAction::Delayed, "4.4.1");
    carol.diagnostic = Some("connect to mx.example.net[192.0.2.7]:25: Connection refused".into());
    carol.will_retry_until = Some(until);
    let input = DsnInput {
        reporting_mta: "relay.example.org",
        postmaster_domain: "example.org",
        envid: None,
        arrival: ARRIVAL,
        original_sender: "alice@example.org",
        recipients: vec![bob, carol],
        ret: DsnReturn::Headers,
        message: ORIGINAL,
        now: NOW,
    };
    let p = parse(&build(&input));
    assert_eq!(p["content_type"], "multipart/report");
    assert_eq!(p["report_type"], "delivery-status");
    assert_eq!(
        field(&p["headers"], "Subject"),
        Some("Delayed Mail (still being retried)")
    );
    assert_eq!(
        p["parts"],
        serde_json::json!([
            "text/plain",
            "message/delivery-status",
            "text/rfc822-headers"
        ])
    );
    let blocks = p["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 3);
    assert_eq!(field(&blocks[0], "Original-Envelope-Id"), None);
    assert_eq!(field(&blocks[1], "Action"), Some("delayed"));
    assert_eq!(field(&blocks[1], "Status"), Some("4.7.1"));
    assert_eq!(
        field(&blocks[1], "Diagnostic-Code"),
        Some("smtp; 451 4.7.1 Greylisted, try again later")
    );
    assert_eq!(
        p["block_dates"][1]["Will-Retry-Until"].as_u64(),
        Some(until)
    );
    assert_eq!(field(&blocks[2], "Status"), Some("4.4.1"));
    assert_eq!(field(&blocks[2], "Remote-MTA"), None);
    assert_eq!(
        field(&blocks[2], "Diagnostic-Code"),
        Some("x-mailkit; connect to mx.example.net[192.0.2.7]:25: Connection refused")
    );
    assert_eq!(
        p["block_dates"][2]["Will-Retry-Until"].as_u64(),
        Some(until)
    );

    let headers = p["part3_text"].as_str().unwrap().replace("\r\n", "\n");
    assert_eq!(
        headers,
        "From: Alice <alice@example.org>\nTo: bob@example.net, carol@example.net\n\
         Subject: Quarterly numbers\nMessage-ID: <q3@example.org>\n"
    );
    let text = p["part1"].as_str().unwrap();
    assert!(text.contains("WARNING ONLY"), "{text}");
    assert!(text.contains("waiting for 4 hours"), "{text}");
    assert!(
        text.contains("<carol@example.net>: delivery delayed"),
        "{text}"
    );
}

#[test]
fn large_message_returns_headers_and_says_so() {
    let mut message = b"Subject: big one\r\nFrom: alice@example.org\r\n\r\n".to_vec();
    while message.len() <= MAX_RETURNED_MESSAGE {
        message.extend_from_slice(b"0123456789012345678901234567890123456789\r\n");
    }
    let input = DsnInput {
        reporting_mta: "relay.example.org",
        postmaster_domain: "example.org",
        envid: None,
        arrival: ARRIVAL,
        original_sender: "alice@example.org",
        recipients: vec![recipient("bob@example.net", DsnAction::Failed, "5.3.4")],
        ret: DsnReturn::Full,
        message: &message,
        now: NOW,
    };
    let raw = build(&input);
    assert!(raw.len() < MAX_RETURNED_MESSAGE, "{}", raw.len());
    let p = parse(&raw);
    assert_eq!(p["parts"][2], "text/rfc822-headers");
    assert_eq!(
        p["part3_text"].as_str().unwrap(),
        "Subject: big one\r\nFrom: alice@example.org\r\n"
    );
    let text = p["part1"].as_str().unwrap();
    assert!(
        text.contains(&format!("larger than {MAX_RETURNED_MESSAGE} bytes")),
        "{text}"
    );
    assert!(text.contains("message too big"), "{text}");
    assert_eq!(field(&p["blocks"][1], "Status"), Some("5.3.4"));
}

#[test]
fn internationalised_addresses_and_8bit_message() {
    let message = "From: Jörg <jörg@bücher.example>\nSubject: Grüße aus Köln\n\nÄpfel und Birnen\n";
    let mut r = recipient("用户@例子.测试", DsnAction::Failed, "5.1.1");
    r.orcpt = Some("utf-8;\\x{7528}\\x{6237}@\\x{4F8B}\\x{5B50}.\\x{6D4B}\\x{8BD5}".to_string());
    r.diagnostic = Some("550 5.1.1 mailbox unavailable".into());
    let input = DsnInput {
        reporting_mta: "relay.example.org",
        postmaster_domain: "example.org",
        envid: None,
        arrival: ARRIVAL,
        original_sender: "jörg@bücher.example",
        recipients: vec![r],
        ret: DsnReturn::Full,
        message: message.as_bytes(),
        now: NOW,
    };
    let raw = build(&input);
    let p = parse(&raw);
    assert_eq!(p["to"], "jörg@bücher.example");
    let b = &p["blocks"][1];
    let escaped = "\\x{7528}\\x{6237}@\\x{4F8B}\\x{5B50}.\\x{6D4B}\\x{8BD5}";
    assert_eq!(
        field(b, "Final-Recipient"),
        Some(format!("utf-8; {escaped}").as_str())
    );
    assert_eq!(
        field(b, "Original-Recipient"),
        Some(format!("utf-8; {escaped}").as_str())
    );
    assert_eq!(p["part3_cte"], "8bit");
    assert_eq!(p["inner_subject"], "Grüße aus Köln");
    assert_eq!(
        p["inner_body"].as_str().unwrap().trim_end(),
        "Äpfel und Birnen"
    );
    // Part 1 shows the address as people write it.
    let text = p["part1"].as_str().unwrap();
    assert!(text.contains("<用户@例子.测试>: delivery failed"), "{text}");
}

#[test]
fn garbage_message_keeps_the_structure() {
    // Binary junk with bare CRs, NULs and something that looks like a boundary.
    let mut message: Vec<u8> = b"Subject: junk\n\n--\r\n--frontier\r\r\0\xff\xfe".to_vec();
    message.extend((0u8..=255).cycle().take(4000));
    let input = DsnInput {
        reporting_mta: "relay.example.org",
        postmaster_domain: "example.org",
        envid: Some("bad\r\nX-Injected: yes"),
        arrival: ARRIVAL,
        original_sender: "alice@example.org",
        recipients: vec![recipient("bob@example.net", DsnAction::Failed, "garbage")],
        ret: DsnReturn::Full,
        message: &message,
        now: NOW,
    };
    let p = parse(&build(&input));
    assert_eq!(
        p["parts"],
        serde_json::json!(["text/plain", "message/delivery-status", "message/rfc822"])
    );
    assert_eq!(p["defects"], Value::Array(vec![]), "{p}");
    assert_eq!(p["inner_subject"], "junk");
    let blocks = p["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 2, "{p}");
    assert_eq!(
        field(&blocks[0], "Original-Envelope-Id"),
        Some("bad X-Injected: yes")
    );
    assert_eq!(field(&blocks[0], "X-Injected"), None);
    assert_eq!(field(&blocks[1], "Status"), Some("5.0.0"));
}
