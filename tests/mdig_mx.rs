//! mdig-mx against real DNS and real SMTP servers on loopback: a private dnsmasq per test
//! (`common::Dns`, started with this file's zone, so the records are known), the peers' aiosmtpd capture
//! (STARTTLS with the peers' CA), smtp-sink (no STARTTLS), refused ports and a silent listener.

mod common;

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Upper bound for one mdig-mx run (a dead resolver costs dns.rs's 2 × 5 s per query).
const RUN_LIMIT: Duration = Duration::from_secs(90);

/// The test zone. TTLs are given per record so the report's TTLs can be checked.
const ZONE: &str = "\
mx-host=two.test,mx1.two.test,10
mx-host=two.test,mx2.two.test,20
host-record=mx1.two.test,127.0.0.1,3600
host-record=mx2.two.test,127.0.0.2,::1,1800
txt-record=two.test,\"v=spf1 ip4:127.0.0.0/8 -all\"
txt-record=two.test,\"unrelated=1\"
txt-record=_dmarc.two.test,\"v=DMARC1; p=reject\"
txt-record=_mta-sts.two.test,\"v=STSv1; id=20261123\"
mx-host=tls.test,mx1.example.test,10
host-record=mx1.example.test,127.0.0.1,600
mx-host=mismatch.test,mx.mismatch.test,10
host-record=mx.mismatch.test,127.0.0.1,600
host-record=implicit.test,127.0.0.3,900
mx-host=nullmx.test,.,0
host-record=nullmx.test,127.0.0.4
mx-host=cname.test,alias.cname.test,10
cname=alias.cname.test,mx1.example.test
mx-host=iplit.test,127.0.0.1,10
mx-host=noaddr.test,ghost.noaddr.test,10
mx-host=twospf.test,mx1.example.test,10
mx-host=public.test,mx.public.test,10
host-record=mx.public.test,192.0.2.10,2001:db8::10,600
txt-record=twospf.test,\"v=spf1 -all\"
txt-record=twospf.test,\"v=spf1 mx -all\"
";

/// A private dnsmasq (tests/common) serving [`ZONE`]; killed on drop.
fn start_dns() -> common::Dns {
    common::Dns::start(ZONE)
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }
}

/// Runs mdig-mx with a hard time limit.
fn mdig(args: &[&str]) -> Out {
    let mut child = Command::new(common::bin("mdig-mx"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mdig-mx");
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t1 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let t2 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mdig-mx {args:?} did not finish within {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Out {
        code: status.code().unwrap_or(-1),
        stdout: t1.join().unwrap(),
        stderr: t2.join().unwrap(),
    }
}

fn resolver(dns: &common::Dns) -> String {
    dns.addr()
}

fn domain(doc: &Value, i: usize) -> &Value {
    &doc["domains"][i]
}

/// `mdig-mx --resolver <dns> --probe --port <port> <rest>`.
fn probe(dns: &common::Dns, port: &str, rest: &[&str]) -> Out {
    let resolver = resolver(dns);
    let mut args = vec!["--resolver", &resolver, "--probe", "--port", port];
    args.extend_from_slice(rest);
    mdig(&args)
}

#[test]
fn text_report_matches_the_zone() {
    let dns = start_dns();
    let out = mdig(&["--resolver", &resolver(&dns), "two.test"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let t = &out.stdout;
    let mx1 = t.find("MX 10 mx1.two.test").expect(t);
    let mx2 = t.find("MX 20 mx2.two.test").expect(t);
    assert!(mx1 < mx2, "preference order: {t}");
    assert!(t.contains("A 127.0.0.1 ttl 3600"), "{t}");
    assert!(t.contains("A 127.0.0.2 ttl 1800"), "{t}");
    assert!(t.contains("AAAA ::1 ttl 1800"), "{t}");
    assert!(t.contains("SPF: v=spf1 ip4:127.0.0.0/8 -all"), "{t}");
    assert!(!t.contains("unrelated=1"), "only v=spf1 TXT is SPF: {t}");
    assert!(t.contains("DMARC: v=DMARC1; p=reject"), "{t}");
    assert!(t.contains("MTA-STS: v=STSv1; id=20261123"), "{t}");
    assert!(t.contains("no problems found"), "{t}");
}

#[test]
fn json_report_matches_the_zone() {
    let dns = start_dns();
    let out = mdig(&[
        "--resolver",
        &resolver(&dns),
        "--json",
        "two.test",
        "implicit.test",
    ]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let doc = out.json();
    assert_eq!(doc["exit"], 0);
    let d = domain(&doc, 0);
    assert_eq!(d["domain"], "two.test");
    assert_eq!(d["route"], "mx");
    assert!(d["error"].is_null());
    let mx = d["mx"].as_array().unwrap();
    assert_eq!(mx.len(), 2);
    assert_eq!(mx[0]["preference"], 10);
    assert_eq!(mx[0]["host"], "mx1.two.test");
    assert_eq!(mx[1]["preference"], 20);
    assert_eq!(mx[1]["host"], "mx2.two.test");
    assert_eq!(mx[0]["cname"], Value::Null);
    assert_eq!(mx[0]["ip_literal"], false);
    assert!(mx[0]["ttl"].is_u64());
    assert_eq!(
        mx[0]["addresses"],
        serde_json::json!([{"ip": "127.0.0.1", "family": "ipv4", "ttl": 3600, "loopback": true}])
    );
    assert_eq!(
        mx[1]["addresses"],
        serde_json::json!([
            {"ip": "127.0.0.2", "family": "ipv4", "ttl": 1800, "loopback": true},
            {"ip": "::1", "family": "ipv6", "ttl": 1800, "loopback": true}
        ])
    );
    assert_eq!(d["spf"], serde_json::json!(["v=spf1 ip4:127.0.0.0/8 -all"]));
    assert_eq!(d["dmarc"], serde_json::json!(["v=DMARC1; p=reject"]));
    assert_eq!(d["mta_sts"], serde_json::json!(["v=STSv1; id=20261123"]));
    // No policy host behind the record (RFC 8461 §3.3): a warning, and why.
    assert_eq!(d["mta_sts_policy"]["id"], "20261123");
    assert!(d["mta_sts_policy"]["policy"].is_null());
    assert!(d["mta_sts_policy"]["error"].is_string());
    assert_eq!(d["probes"], serde_json::json!([]));
    assert_eq!(d["problems"], serde_json::json!([]));
    assert_eq!(d["exit"], 0);

    let i = domain(&doc, 1);
    assert_eq!(i["domain"], "implicit.test");
    assert_eq!(i["route"], "implicit_mx");
    assert_eq!(i["mx"][0]["host"], "implicit.test");
    assert_eq!(i["mx"][0]["preference"], 0);
    assert!(i["mx"][0]["ttl"].is_null());
    assert_eq!(i["mx"][0]["addresses"][0]["ip"], "127.0.0.3");
    assert_eq!(i["mx"][0]["addresses"][0]["ttl"], 900);
    assert_eq!(i["spf"], serde_json::json!([]));
}

#[test]
fn no_route_exits_68() {
    let dns = start_dns();
    let r = resolver(&dns);
    for (name, route) in [
        ("missing.test", "nxdomain"),
        ("nullmx.test", "null_mx"),
        ("noaddr.test", "no_address"),
    ] {
        let out = mdig(&["--resolver", &r, "--json", name]);
        assert_eq!(out.code, 68, "{name}: {}{}", out.stdout, out.stderr);
        let doc = out.json();
        assert_eq!(doc["exit"], 68);
        assert_eq!(domain(&doc, 0)["route"], route, "{name}");
        assert!(domain(&doc, 0)["error"].is_string(), "{name}");
    }
    // The null MX's A record must not be offered as a route.
    let out = mdig(&["--resolver", &r, "nullmx.test"]);
    assert_eq!(out.code, 68);
    assert!(out.stdout.contains("null MX"), "{}", out.stdout);
    assert!(!out.stdout.contains("127.0.0.4"), "{}", out.stdout);
    let out = mdig(&["--resolver", &r, "missing.test"]);
    assert!(out.stdout.contains("NXDOMAIN"), "{}", out.stdout);
    // The worst domain decides: a good and a missing one → 68.
    let out = mdig(&["--resolver", &r, "--json", "two.test", "missing.test"]);
    assert_eq!(out.code, 68);
    let doc = out.json();
    assert_eq!(domain(&doc, 0)["exit"], 0);
    assert_eq!(domain(&doc, 1)["exit"], 68);
}

#[test]
fn rfc_violations_are_flagged_with_exit_1() {
    let dns = start_dns();
    let r = resolver(&dns);
    let out = mdig(&["--resolver", &r, "--json", "cname.test"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let doc = out.json();
    let d = domain(&doc, 0);
    assert_eq!(d["mx"][0]["host"], "alias.cname.test");
    assert_eq!(d["mx"][0]["cname"], "mx1.example.test");
    assert_eq!(d["mx"][0]["addresses"][0]["ip"], "127.0.0.1");
    assert!(d["problems"][0].as_str().unwrap().contains("CNAME"), "{d}");

    let out = mdig(&["--resolver", &r, "--json", "iplit.test"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let doc = out.json();
    let d = domain(&doc, 0);
    assert_eq!(d["mx"][0]["ip_literal"], true);
    assert_eq!(d["mx"][0]["host"], "127.0.0.1");
    assert!(
        d["problems"][0].as_str().unwrap().contains("IP address"),
        "{d}"
    );

    let out = mdig(&["--resolver", &r, "twospf.test"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("2 SPF records"), "{}", out.stdout);

    let out = mdig(&["--resolver", &r, "cname.test"]);
    assert!(
        out.stdout.contains("CNAME to mx1.example.test"),
        "{}",
        out.stdout
    );
}

#[test]
fn dns_temporary_failure_exits_75() {
    // A UDP socket that never answers, and no TCP listener on that port.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let out = mdig(&[
        "--resolver",
        &format!("127.0.0.1:{port}"),
        "--json",
        "two.test",
    ]);
    assert_eq!(out.code, 75, "{}{}", out.stdout, out.stderr);
    let doc = out.json();
    assert_eq!(domain(&doc, 0)["route"], "temporary_failure");
    drop(silent);
}

#[test]
fn bad_usage_exits_64() {
    let out = mdig(&["--no-such-option", "x.test"]);
    assert_eq!(out.code, 64, "{}", out.stderr);
    let out = mdig(&[]);
    assert_eq!(out.code, 64, "{}", out.stderr);
    let out = mdig(&["--resolver", "not-an-ip", "x.test"]);
    assert_eq!(out.code, 64, "{}", out.stderr);
    let out = mdig(&["--timeout", "0", "x.test"]);
    assert_eq!(out.code, 64, "{}", out.stderr);
    let out = mdig(&["--timeout", "601", "x.test"]);
    assert_eq!(out.code, 64, "{}", out.stderr);
    let out = mdig(&["--ca-file", "/nonexistent/ca.pem", "x.test"]);
    assert_eq!(out.code, 66, "{}", out.stderr);
    assert!(
        out.stderr.starts_with("mdig-mx: --ca-file: "),
        "{}",
        out.stderr
    );
    let dns = start_dns();
    let out = mdig(&["--resolver", &resolver(&dns), "a..b"]);
    assert_eq!(out.code, 64, "{}{}", out.stdout, out.stderr);
}

fn ca_file() -> String {
    common::peer("PEER_CA_FILE")
}

#[test]
fn probe_starttls_server_with_peers_ca_is_clean() {
    let dns = start_dns();
    let port = common::peer("PEER_CAPTURE_PORT");
    let ca = ca_file();
    let out = probe(
        &dns,
        &port,
        &[
            "--ca-file",
            &ca,
            "--timeout",
            "10",
            "--ehlo",
            "probe.mdig.test",
            "--json",
            "tls.test",
        ],
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let doc = out.json();
    let d = domain(&doc, 0);
    let p = &d["probes"][0];
    assert_eq!(d["probes"].as_array().unwrap().len(), 1);
    assert_eq!(p["host"], "mx1.example.test");
    assert_eq!(p["ip"], "127.0.0.1");
    assert_eq!(p["port"].to_string(), port);
    assert!(p["connect_ms"].is_number());
    assert!(p["banner"].as_str().unwrap().starts_with("220 "), "{p}");
    assert!(!p["ehlo_name"].as_str().unwrap().is_empty());
    assert_eq!(p["starttls"], true);
    assert!(p["extensions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "STARTTLS"));
    let tls = &p["tls"];
    assert!(
        tls["version"].as_str().unwrap().starts_with("TLSv1."),
        "{tls}"
    );
    assert!(tls["cipher"].as_str().unwrap().starts_with("TLS_"), "{tls}");
    assert_eq!(tls["verified"], true, "{tls}");
    assert!(tls["verify_error"].is_null());
    let cert = &tls["certificate"];
    assert!(cert["sans"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s == "mx1.example.test"));
    assert!(!cert["issuer"].as_str().unwrap().is_empty());
    assert!(cert["not_after_unix"].as_i64().unwrap() > 0);
    assert!(cert["not_after"].as_str().unwrap().ends_with('Z'));
    // The key pin, as OpenSSL computes it, for msend --tls-fingerprint.
    let pin = common::peer_key_sha256();
    assert_eq!(cert["spki_sha256"], pin.as_str(), "{cert}");
    assert!(!tls["extensions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "STARTTLS"));
    assert_eq!(d["problems"], serde_json::json!([]));

    // Every field name in the output is documented under JSON FIELDS in --help (the man page).
    let help = mdig(&["--help"]).stdout;
    let fields = help
        .split("JSON FIELDS:")
        .nth(1)
        .expect("JSON FIELDS section");
    let mut keys = Vec::new();
    collect_keys(&doc, &mut keys);
    for k in keys {
        assert!(fields.contains(&k), "JSON field {k} not documented");
    }

    // The same in text form.
    let out = probe(&dns, &port, &["--ca-file", &ca, "tls.test"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("STARTTLS: offered"), "{}", out.stdout);
    assert!(out.stdout.contains("verified for mx1.example.test: yes"));
    assert!(out.stdout.contains("certificate SANs:"));
    assert!(
        out.stdout.contains(&format!(
            "certificate key SHA-256: {pin} (msend --tls-fingerprint)"
        )),
        "{}",
        out.stdout
    );
}

#[test]
fn probe_reports_untrusted_and_mismatched_certificates() {
    let dns = start_dns();
    let port = common::peer("PEER_CAPTURE_PORT");
    // Against webpki-roots the peers' test CA is unknown.
    let out = probe(&dns, &port, &["--json", "tls.test"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let doc = out.json();
    let p = &domain(&doc, 0)["probes"][0];
    assert_eq!(p["tls"]["verified"], false);
    assert!(p["tls"]["verify_error"].is_string());
    assert!(!domain(&doc, 0)["problems"].as_array().unwrap().is_empty());

    // Trusted CA, but the certificate does not carry mx.mismatch.test.
    let ca = ca_file();
    let out = probe(&dns, &port, &["--ca-file", &ca, "mismatch.test"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("verified for mx.mismatch.test: no"));
    let problems = out.stdout.split("problems:").nth(1).expect(&out.stdout);
    assert!(problems.contains("mx.mismatch.test"), "{problems}");
}

#[test]
fn probe_server_without_starttls_is_a_problem() {
    let dns = start_dns();
    let port = common::peer("PEER_SINK_PORT");
    let out = probe(&dns, &port, &["--json", "tls.test"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let doc = out.json();
    let d = domain(&doc, 0);
    let p = &d["probes"][0];
    assert_eq!(p["starttls"], false);
    assert!(p["tls"].is_null());
    assert!(p["banner"].as_str().unwrap().starts_with("220 "));
    assert!(p["extensions"].as_array().unwrap().iter().all(|e| e != ""));
    let problems = d["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|x| x.as_str().unwrap().contains("no STARTTLS")),
        "{problems:?}"
    );
    let out = probe(&dns, &port, &["tls.test"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("STARTTLS: not offered"),
        "{}",
        out.stdout
    );
}

#[test]
fn probe_refused_and_silent_servers() {
    let dns = start_dns();
    let refused = common::refused_port();
    let out = probe(&dns, &refused.to_string(), &["--json", "tls.test"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let doc = out.json();
    let d = domain(&doc, 0);
    assert!(d["probes"][0]["connect_ms"].is_null());
    assert!(
        d["problems"][0].as_str().unwrap().contains("refused"),
        "{d}"
    );

    // A server that accepts but never greets: the banner times out.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = std::thread::spawn(move || {
        // Hold the connection open without a word, for longer than the probe's limit.
        if let Ok((s, _)) = listener.accept() {
            std::thread::sleep(Duration::from_secs(4));
            drop(s);
        }
    });
    let out = probe(&dns, &port.to_string(), &["--timeout", "1", "tls.test"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("timed out waiting for the greeting"),
        "{}",
        out.stdout
    );
    holder.join().unwrap();
}

#[test]
fn peers_zone_example_test() {
    // The shared peers' dnsmasq zone (see tests/peers/templates/dnsmasq.conf.in).
    let port = common::peer("PEER_DNS_PORT");
    let out = mdig(&[
        "--resolver",
        &format!("127.0.0.1:{port}"),
        "--json",
        "example.test",
        "aonly.test",
    ]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let doc = out.json();
    let d = domain(&doc, 0);
    let hosts: Vec<(u64, String, String)> = d["mx"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["preference"].as_u64().unwrap(),
                m["host"].as_str().unwrap().to_string(),
                m["addresses"][0]["ip"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        hosts,
        vec![
            (10, "mx1.example.test".into(), "127.0.0.1".into()),
            (20, "mx2.example.test".into(), "127.0.0.2".into())
        ]
    );
    assert_eq!(d["spf"], serde_json::json!(["v=spf1 ip4:127.0.0.0/8 -all"]));
    assert_eq!(d["dmarc"], serde_json::json!(["v=DMARC1; p=none"]));
    assert_eq!(domain(&doc, 1)["route"], "implicit_mx");
    assert_eq!(domain(&doc, 1)["mx"][0]["addresses"][0]["ip"], "127.0.0.3");
}

fn collect_keys(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                out.push(k.clone());
                collect_keys(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_keys(v, out)),
        _ => {}
    }
}

/// An MX on a loopback address is flagged: a warning in the text, `loopback` per address and
/// `warnings` in JSON; the exit status stays what the route says (issue 12).
#[test]
fn an_mx_on_loopback_is_flagged() {
    let dns = start_dns();
    let r = resolver(&dns);
    let out = mdig(&["--resolver", &r, "two.test"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let t = &out.stdout;
    assert!(t.contains("A 127.0.0.1 ttl 3600  (loopback)"), "{t}");
    assert!(t.contains("AAAA ::1 ttl 1800  (loopback)"), "{t}");
    assert!(
        t.contains("  warnings:\n  - MX mx1.two.test resolves to loopback (127.0.0.1): a sending MTA would deliver to itself, not to two.test\n"),
        "{t}"
    );
    assert!(
        t.contains("MX mx2.two.test resolves to loopback (127.0.0.2, ::1)"),
        "{t}"
    );
    let out = mdig(&["--resolver", &r, "--json", "two.test", "public.test"]);
    let doc = out.json();
    let two = domain(&doc, 0);
    // Two loopback MX warnings and the MTA-STS record without a policy host.
    assert_eq!(two["warnings"].as_array().map(Vec::len), Some(3), "{two}");
    assert_eq!(two["mx"][0]["addresses"][0]["loopback"], true);
    let public = domain(&doc, 1);
    assert_eq!(public["warnings"], serde_json::json!([]), "{public}");
    for a in public["mx"][0]["addresses"].as_array().unwrap() {
        assert_eq!(a["loopback"], false, "{a}");
    }
    let out = mdig(&["--resolver", &r, "public.test"]);
    assert!(!out.stdout.contains("loopback"), "{}", out.stdout);
    assert!(!out.stdout.contains("warnings:"), "{}", out.stdout);
}

/// A name /etc/hosts lists that is not in the special-use localhost zone (RFC 6761 §6.3,
/// which stays loopback anyway): this host's name, ip6-localhost, ... A machine without one
/// fails the test that needs it, as a missing peer does.
fn a_name_from_etc_hosts() -> String {
    let hosts = std::fs::read_to_string("/etc/hosts").expect("/etc/hosts");
    hosts
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.split_whitespace().skip(1))
        .find(|n| {
            let n = n.to_ascii_lowercase();
            n != "localhost"
                && !n.ends_with(".localhost")
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        })
        .map(str::to_string)
        .unwrap_or_else(|| panic!("/etc/hosts lists no name but localhost:\n{hosts}"))
}

/// With --resolver every name is asked of that server: a name /etc/hosts also lists gets the
/// server's answer, not the file's (issue 12).
#[test]
fn with_a_resolver_etc_hosts_is_not_read() {
    let name = a_name_from_etc_hosts();
    let dns = common::Dns::start(&format!(
        "local=/{name}/\nmx-host=hosts.test,{name},10\nhost-record={name},192.0.2.7,600\n"
    ));
    let out = mdig(&["--resolver", &dns.addr(), "--json", "hosts.test"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let doc = out.json();
    let d = domain(&doc, 0);
    assert_eq!(d["mx"][0]["host"], name.as_str(), "{d}");
    assert_eq!(
        d["mx"][0]["addresses"],
        serde_json::json!([{"ip": "192.0.2.7", "family": "ipv4", "ttl": 600, "loopback": false}]),
        "{d}"
    );
    // localhost itself is loopback by RFC 6761 §6.3 (no query), and flagged.
    let out = mdig(&["--resolver", &dns.addr(), "--json", "localhost"]);
    let doc = out.json();
    let d = domain(&doc, 0);
    assert_eq!(d["route"], "implicit_mx", "{d}");
    let warnings = d["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{d}");
    assert!(
        warnings[0]
            .as_str()
            .unwrap()
            .starts_with("MX localhost resolves to loopback (127.0.0.1"),
        "{d}"
    );
}
