//! mdig-mx's SPF, DMARC and DKIM key reports (issue 15) against a private dnsmasq on loopback
//! serving good and broken records. SPF validity and look-up counts are cross-checked with
//! python3-spf (Debian's pyspf, asked through dnspython pointed at the same dnsmasq) for a
//! client address that matches nothing, so both walk every term; python3's json reads
//! mdig-mx's `--json` in that same script. A subdomain without a DMARC record reports its
//! organizational domain's policy and `sp=` (mrelayd's verdict for the same records is in
//! tests/spf_dmarc.rs). DKIM keys are the ones `mrelayd dkim keygen` prints
//! (RSA and Ed25519) and OpenSSL-made RSA keys of 512 and 1024 bits, whose length OpenSSL
//! itself states.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

/// Records that need no keys. `deep.test` nests includes six deep with an `a` at each level:
/// 12 look-ups (the 11th is over the limit) only when includes are counted recursively.
fn static_zone() -> String {
    let mut z = String::from(
        "\
host-record=mx.good.test,127.0.0.11
mx-host=good.test,mx.good.test,10
host-record=good.test,127.0.0.10
host-record=host.good.test,127.0.0.12
txt-record=good.test,\"v=spf1 include:_spf.good.test a mx ip4:127.0.0.0/8 -all\"
txt-record=_spf.good.test,\"v=spf1 include:_inner.good.test -all\"
txt-record=_inner.good.test,\"v=spf1 a:host.good.test ~all\"
txt-record=_dmarc.good.test,\"v=DMARC1; p=quarantine; sp=reject; pct=50; adkim=s; aspf=r; rua=mailto:agg@good.test; ruf=mailto:fail@good.test\"
txt-record=void.test,\"v=spf1 a:n1.void.test a:n2.void.test a:n3.void.test -all\"
txt-record=void2.test,\"v=spf1 a:n1.void.test a:n2.void.test -all\"
txt-record=exists.test,\"v=spf1 exists:a.%{d} exists:b.%{d} exists:c.%{d} -all\"
txt-record=exists2.test,\"v=spf1 exists:a.%{d} exists:b.%{d} -all\"
txt-record=existsok.test,\"v=spf1 -exists:ok.%{d} -all\"
host-record=ok.existsok.test,127.0.0.21
txt-record=existsv6.test,\"v=spf1 exists:v6.%{d} exists:n.%{d} -all\"
host-record=v6.existsv6.test,2001:db8::1
txt-record=syntax.test,\"v=spf1 ip4:192.0.2.300 -all\"
txt-record=unknown.test,\"v=spf1 foo:bar.test -all\"
txt-record=noinc.test,\"v=spf1 include:missing.noinc.test -all\"
txt-record=badp.test,\"v=spf1 -all\"
txt-record=_dmarc.badp.test,\"v=DMARC1; p=maybe; pct=200\"
txt-record=deep.test,\"v=spf1 include:d1.deep.test -all\"
txt-record=_dmarc.org.test,\"v=DMARC1; p=reject; sp=quarantine\"
host-record=org.test,127.0.0.30
host-record=sub.org.test,127.0.0.31
host-record=a.b.sub.org.test,127.0.0.32
txt-record=d6.deep.test,\"v=spf1 a:h.deep.test -all\"
host-record=h.deep.test,127.0.0.13
",
    );
    for d in [
        "void", "void2", "syntax", "unknown", "noinc", "badp", "deep", "many", "ten", "exists",
        "exists2", "existsok", "existsv6", "incvoid",
    ] {
        z.push_str(&format!("host-record={d}.test,127.0.0.20\n"));
    }
    for k in 1..=5 {
        z.push_str(&format!(
            "txt-record=d{k}.deep.test,\"v=spf1 a:h.deep.test include:d{}.deep.test -all\"\n",
            k + 1
        ));
    }
    let includes = |n: usize| -> String {
        (1..=n)
            .map(|i| format!("include:i{i}.many.test"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    z.push_str(&format!(
        "txt-record=many.test,\"v=spf1 {} -all\"\n",
        includes(11)
    ));
    z.push_str(&format!(
        "txt-record=ten.test,\"v=spf1 {} -all\"\n",
        includes(10)
    ));
    // An include without a record is a permerror (RFC 7208 §5.2), where a receiver stops; the
    // walk goes on and counts the whole record's 11 look-ups (mdig-mx(1)).
    z.push_str(&format!(
        "txt-record=incvoid.test,\"v=spf1 include:i1.many.test include:none.incvoid.test {} -all\"\n",
        includes(9)
    ));
    for i in 1..=11 {
        z.push_str(&format!(
            "txt-record=i{i}.many.test,\"v=spf1 ip4:198.51.100.{i} -all\"\n"
        ));
    }
    z
}

/// A key record for the zone, with what its report must say.
struct Key {
    selector: &'static str,
    txt: String,
    key_type: &'static str,
    bits: Option<u64>,
}

/// `mrelayd dkim keygen good.test SELECTOR --algorithm ALGO` and the TXT record it prints.
fn keygen(dir: &Path, selector: &str, algo: &str) -> String {
    let key = dir.join(format!("{selector}.pem"));
    common::dkim_keygen(dir, "good.test", selector, algo, &key)
}

/// An RSA key of `bits` made by OpenSSL, its `p=` value and the length OpenSSL states.
fn openssl_rsa(dir: &Path, bits: u32) -> (String, u64) {
    let key = dir.join(format!("rsa{bits}.pem"));
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
        out.stdout
    };
    run(&["genrsa", "-out", key.to_str().unwrap(), &bits.to_string()]);
    let der = run(&[
        "rsa",
        "-in",
        key.to_str().unwrap(),
        "-pubout",
        "-outform",
        "DER",
    ]);
    let pubfile = dir.join(format!("rsa{bits}.der"));
    std::fs::write(&pubfile, &der).unwrap();
    let text = String::from_utf8_lossy(&run(&[
        "rsa",
        "-pubin",
        "-inform",
        "DER",
        "-in",
        pubfile.to_str().unwrap(),
        "-text",
        "-noout",
    ]))
    .into_owned();
    // "Public-Key: (1024 bit)"
    let stated: u64 = text
        .split_once("Public-Key: (")
        .and_then(|(_, r)| r.split_once(" bit)"))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no key length in {text}"));
    use base64::Engine as _;
    (
        base64::engine::general_purpose::STANDARD.encode(der),
        stated,
    )
}

/// The DKIM keys, made once for every test of this file.
fn keys() -> &'static [Key] {
    static KEYS: OnceLock<Vec<Key>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = common::scratch();
        let (p512, b512) = openssl_rsa(dir.path(), 512);
        let (p1024, b1024) = openssl_rsa(dir.path(), 1024);
        vec![
            Key {
                selector: "rsa",
                txt: keygen(dir.path(), "rsa", "rsa"),
                key_type: "rsa",
                bits: Some(2048),
            },
            Key {
                selector: "ed",
                txt: keygen(dir.path(), "ed", "ed25519"),
                key_type: "ed25519",
                bits: Some(256),
            },
            Key {
                selector: "weak",
                txt: format!("v=DKIM1; k=rsa; p={p512}"),
                key_type: "rsa",
                bits: Some(b512),
            },
            Key {
                selector: "k1024",
                txt: format!("v=DKIM1; p={p1024}; t=y"),
                key_type: "rsa",
                bits: Some(b1024),
            },
            Key {
                selector: "revoked",
                txt: "v=DKIM1; k=rsa; p=".into(),
                key_type: "rsa",
                bits: None,
            },
            Key {
                selector: "junk",
                txt: "v=DKIM1; k=rsa; p=bm90IGEga2V5".into(),
                key_type: "rsa",
                bits: None,
            },
        ]
    })
}

fn start_dns() -> common::Dns {
    let mut zone = static_zone();
    for k in keys() {
        zone.push_str(&common::txt_line(
            &format!("{}._domainkey.good.test", k.selector),
            &k.txt,
        ));
        zone.push('\n');
    }
    common::Dns::start(&zone)
}

fn mdig(dns: &common::Dns, args: &[&str]) -> (i32, String) {
    let out = common::run_with_input(
        Command::new(common::bin("mdig-mx"))
            .arg("--resolver")
            .arg(dns.addr())
            .args(args),
        b"",
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.stderr.is_empty() || !stdout.is_empty(),
        "mdig-mx {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), stdout)
}

/// Reads mdig-mx's JSON with python3's json and asks python3-spf (pyspf) about each domain
/// for client 192.0.2.1 (matched by no record here). One line per domain:
/// `DOMAIN MDIG_STATUS MDIG_LOOKUPS MDIG_VOID PYSPF_RESULT PYSPF_LOOKUPS PYSPF_VOID`.
const PYSPF: &str = r#"
import json, sys
import dns.resolver
import spf
r = dns.resolver.Resolver(configure=False)
r.nameservers = ["127.0.0.1"]
r.port = int(sys.argv[1])
r.lifetime = 10
dns.resolver.default_resolver = r
doc = json.load(open(sys.argv[2]))
for d in doc["domains"]:
    c = d["spf_check"]
    q = spf.query(i="192.0.2.1", s="postmaster@" + d["domain"], h="mx.client.test", querytime=20)
    res, code, expl = q.check()
    print(d["domain"], c["status"], c["lookups"], c["void_lookups"], res, q.lookups, q.void_lookups)
"#;

/// Domain → (mdig status, look-ups, void, pyspf result, look-ups, void).
type Compared = Vec<(String, String, u64, u64, String, u64, u64)>;

fn pyspf(dns: &common::Dns, json: &str) -> Compared {
    let dir = common::scratch();
    let script = dir.path().join("pyspf.py");
    let doc = dir.path().join("mdig.json");
    std::fs::write(&script, PYSPF).unwrap();
    std::fs::write(&doc, json).unwrap();
    // Debian's python3, where python3-spf and python3-dnspython are installed.
    let out = common::run_with_input(
        Command::new("/usr/bin/python3")
            .arg(&script)
            .arg(dns.port.to_string())
            .arg(&doc),
        b"",
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python3-spf (apt-get install python3-spf): {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f.len(), 7, "{l}");
            let n = |s: &str| s.parse::<u64>().unwrap();
            (
                f[0].to_string(),
                f[1].to_string(),
                n(f[2]),
                n(f[3]),
                f[4].to_string(),
                n(f[5]),
                n(f[6]),
            )
        })
        .collect()
}

#[test]
fn spf_validity_and_lookup_counts_match_python3_spf() {
    let dns = start_dns();
    // domain, status, look-ups counted, void look-ups
    let expected = [
        ("good.test", "valid", 5, 0),
        ("ten.test", "valid", 10, 0),
        ("many.test", "permerror", 11, 0),
        ("deep.test", "permerror", 12, 0),
        ("void2.test", "valid", 2, 2),
        ("void.test", "permerror", 3, 3),
        ("syntax.test", "permerror", 0, 0),
        ("unknown.test", "permerror", 0, 0),
        ("noinc.test", "permerror", 1, 1),
        ("incvoid.test", "permerror", 11, 1),
        // exists: asks for A only (RFC 7208 §5.7): a name without one is void, also when it
        // has an AAAA record; a third void is a permerror as for a:.
        ("exists2.test", "valid", 2, 2),
        ("exists.test", "permerror", 3, 3),
        ("existsok.test", "valid", 1, 0),
        ("existsv6.test", "valid", 2, 2),
    ];
    let domains: Vec<&str> = expected.iter().map(|e| e.0).collect();
    let mut args = vec!["--json"];
    args.extend(&domains);
    let (code, json) = mdig(&dns, &args);
    assert_eq!(code, 1, "problems found: exit 1\n{json}");
    let doc: Value = serde_json::from_str(&json).unwrap();
    for (i, (d, status, lookups, void)) in expected.iter().enumerate() {
        let r = &doc["domains"][i];
        assert_eq!(r["domain"], *d);
        let c = &r["spf_check"];
        assert_eq!(c["status"], *status, "{d}: {c:#}");
        assert_eq!(c["lookups"], *lookups, "{d}: {c:#}");
        assert_eq!(c["void_lookups"], *void, "{d}: {c:#}");
        assert_eq!(
            (c["lookup_limit"].as_u64(), c["void_limit"].as_u64()),
            (Some(10), Some(2))
        );
        let has_problem = r["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().starts_with(&format!("SPF of {d}:")));
        assert_eq!(has_problem, *status != "valid", "{d}: {:#}", r["problems"]);
        assert_eq!(r["exit"], if *status == "valid" { 0 } else { 1 }, "{d}");
    }
    // The chain: the nested includes of good.test by depth, the records they lead to.
    let chain = doc["domains"][0]["spf_check"]["chain"].as_array().unwrap();
    let terms: Vec<(u64, &str)> = chain
        .iter()
        .map(|l| (l["depth"].as_u64().unwrap(), l["term"].as_str().unwrap()))
        .collect();
    assert_eq!(
        terms,
        [
            (0, "include:_spf.good.test"),
            (1, "include:_inner.good.test"),
            (2, "a:host.good.test"),
            (0, "a"),
            (0, "mx")
        ]
    );
    assert_eq!(chain[0]["record"], "v=spf1 include:_inner.good.test -all");
    assert_eq!(chain[3]["domain"], "good.test");
    assert_eq!(chain[4]["note"], "1 MX host");

    let compared = pyspf(&dns, &json);
    eprintln!("mdig-mx vs python3-spf: {compared:?}");
    assert_eq!(compared.len(), expected.len());
    for (d, status, lookups, void, res, py_lookups, py_void) in &compared {
        assert_eq!(
            status == "permerror",
            res == "permerror",
            "{d}: mdig-mx {status}, python3-spf {res}"
        );
        if status == "valid" {
            assert_eq!(res, "fail", "{d}: no record here allows 192.0.2.1");
            assert_eq!(
                (lookups, void),
                (py_lookups, py_void),
                "{d}: look-ups and void look-ups, mdig-mx vs python3-spf"
            );
        }
    }
}

#[test]
fn dmarc_policy_parsed_and_invalid_policy_is_a_problem() {
    let dns = start_dns();
    let (code, json) = mdig(&dns, &["--json", "good.test", "badp.test"]);
    assert_eq!(code, 1, "{json}");
    let doc: Value = serde_json::from_str(&json).unwrap();
    let good = &doc["domains"][0];
    assert_eq!(good["exit"], 0, "{good:#}");
    let d = &good["dmarc_policy"];
    assert_eq!(d["valid"], true);
    assert_eq!(
        (d["p"].as_str(), d["sp"].as_str(), d["pct"].as_u64()),
        (Some("quarantine"), Some("reject"), Some(50))
    );
    assert_eq!(
        (d["adkim"].as_str(), d["aspf"].as_str()),
        (Some("s"), Some("r"))
    );
    assert_eq!(d["rua"], serde_json::json!(["mailto:agg@good.test"]));
    assert_eq!(d["ruf"], serde_json::json!(["mailto:fail@good.test"]));
    let bad = &doc["domains"][1];
    assert_eq!(bad["exit"], 1);
    assert_eq!(bad["dmarc_policy"]["valid"], false);
    assert!(bad["dmarc_policy"]["p"].is_null());
    let problems: Vec<&str> = bad["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        problems.iter().any(|p| p.contains("p=maybe")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("pct=200")),
        "{problems:?}"
    );
    // Without a DMARC record there is no policy and no problem about it.
    let (code, json) = mdig(&dns, &["--json", "ten.test"]);
    assert_eq!(code, 0, "{json}");
    let doc: Value = serde_json::from_str(&json).unwrap();
    assert!(doc["domains"][0]["dmarc_policy"].is_null());
}

/// A subdomain without a `_dmarc` record gets its organizational domain's policy, whose `sp=`
/// applies (RFC 7489 §6.6.3), in text and JSON; the organizational domain's own mail gets `p=`.
#[test]
fn dmarc_policy_of_the_organizational_domain() {
    let dns = start_dns();
    let (code, json) = mdig(
        &dns,
        &[
            "--json",
            "sub.org.test",
            "a.b.sub.org.test",
            "org.test",
            "good.test",
        ],
    );
    assert_eq!(code, 0, "{json}");
    let doc: Value = serde_json::from_str(&json).unwrap();
    for (i, sub) in ["sub.org.test", "a.b.sub.org.test"].iter().enumerate() {
        let r = &doc["domains"][i];
        assert_eq!(r["domain"], *sub);
        assert_eq!(
            r["dmarc"],
            serde_json::json!([]),
            "no record of its own: {r:#}"
        );
        let d = &r["dmarc_policy"];
        assert_eq!(d["source"], "organizational_domain", "{sub}: {d:#}");
        assert_eq!(d["policy_domain"], "org.test", "{sub}: {d:#}");
        assert_eq!(d["organizational_domain"], "org.test", "{sub}: {d:#}");
        assert_eq!(d["record"], "v=DMARC1; p=reject; sp=quarantine");
        assert_eq!(
            (d["p"].as_str(), d["sp"].as_str()),
            (Some("reject"), Some("quarantine"))
        );
        assert_eq!(
            (d["applied_tag"].as_str(), d["applied_policy"].as_str()),
            (Some("sp"), Some("quarantine")),
            "{sub}: {d:#}"
        );
    }
    // The organizational domain itself, and a domain with its own record: p applies.
    for (i, domain, p) in [(2, "org.test", "reject"), (3, "good.test", "quarantine")] {
        let d = &doc["domains"][i]["dmarc_policy"];
        assert_eq!(d["source"], "domain", "{domain}: {d:#}");
        assert_eq!(d["policy_domain"], domain);
        assert!(d["organizational_domain"].is_null(), "{d:#}");
        assert_eq!(
            (d["applied_tag"].as_str(), d["applied_policy"].as_str()),
            (Some("p"), Some(p)),
            "{domain}: {d:#}"
        );
    }

    let (code, text) = mdig(&dns, &["sub.org.test"]);
    assert_eq!(code, 0, "{text}");
    for line in [
        "  DMARC: none\n",
        "  DMARC policy of the organizational domain org.test (_dmarc.org.test): \
         v=DMARC1; p=reject; sp=quarantine\n",
        "  DMARC policy: valid, p=reject sp=quarantine pct=100",
        "    applies: sp=quarantine (a subdomain of org.test, RFC 7489 §6.6.3)\n",
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }
    let (_, text) = mdig(&dns, &["org.test"]);
    assert!(text.contains("    applies: p=reject\n"), "{text}");
    assert!(!text.contains("organizational domain"), "{text}");
}

#[test]
fn dkim_keys_from_keygen_and_openssl() {
    let dns = start_dns();
    let mut args = vec!["--json"];
    for k in keys() {
        args.extend(["--selector", k.selector]);
    }
    args.extend(["--selector", "absent", "good.test"]);
    let (code, json) = mdig(&dns, &args);
    assert_eq!(
        code, 1,
        "weak, revoked, junk and absent keys are problems\n{json}"
    );
    let doc: Value = serde_json::from_str(&json).unwrap();
    let r = &doc["domains"][0];
    let dkim = r["dkim"].as_array().unwrap();
    assert_eq!(dkim.len(), keys().len() + 1);
    let problems: Vec<&str> = r["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    for (k, got) in keys().iter().zip(dkim) {
        let name = format!("{}._domainkey.good.test", k.selector);
        assert_eq!(got["name"], name);
        assert_eq!(got["record"], k.txt.as_str());
        assert_eq!(got["key_type"], k.key_type, "{got:#}");
        assert_eq!(got["bits"].as_u64(), k.bits, "{got:#}");
        assert_eq!(got["revoked"], k.selector == "revoked");
        assert_eq!(got["testing"], k.selector == "k1024");
        let flagged = problems
            .iter()
            .any(|p| p.starts_with(&format!("DKIM key {name}:")));
        let bad = matches!(k.selector, "weak" | "revoked" | "junk");
        assert_eq!(flagged, bad, "{}: {problems:?}", k.selector);
    }
    assert_eq!(
        keys()[2].bits,
        Some(512),
        "OpenSSL states the 512-bit key's length"
    );
    assert!(dkim[keys().len()]["record"].is_null());
    assert!(problems
        .iter()
        .any(|p| p.contains("selector absent: no key record")));

    // The text report: one line per key.
    let (code, text) = mdig(
        &dns,
        &["--selector", "rsa", "--selector", "ed", "good.test"],
    );
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("DKIM rsa._domainkey.good.test: rsa, 2048 bits\n"),
        "{text}"
    );
    assert!(
        text.contains("DKIM ed._domainkey.good.test: ed25519, 256 bits\n"),
        "{text}"
    );
    assert!(
        text.contains("SPF check: valid, 5 of 10 DNS look-ups, 0 of 2 void"),
        "{text}"
    );
    assert!(
        text.contains("      #2 include:_inner.good.test: v=spf1 a:host.good.test ~all"),
        "{text}"
    );
    assert!(
        text.contains("DMARC policy: valid, p=quarantine sp=reject pct=50 adkim=s aspf=r"),
        "{text}"
    );
    assert!(text.contains("no problems found"), "{text}");
}

#[test]
fn bad_selector_is_a_usage_error() {
    let out = common::run_with_input(
        Command::new(common::bin("mdig-mx")).args(["--selector", "a b", "good.test"]),
        b"",
    );
    assert_eq!(out.status.code(), Some(64), "{out:?}");
}

#[test]
fn dns_failure_in_the_spf_walk_is_temperror_not_permerror() {
    // dnsmasq forwards dead.test to a refused loopback port: those queries time out, the rest
    // of the zone answers.
    let zone = format!(
        "server=/dead.test/127.0.0.1#{port}\nhost-record=temp.test,127.0.0.10\n\
         txt-record=temp.test,\"v=spf1 include:x.dead.test -all\"\n\
         server=/_dmarc.org.test/127.0.0.1#{port}\nhost-record=sub.org.test,127.0.0.11\n",
        port = common::refused_port()
    );
    let dns = common::Dns::start(&zone);
    let (code, json) = mdig(&dns, &["--json", "temp.test"]);
    assert_eq!(code, 75, "a DNS failure is worth a retry\n{json}");
    let doc: Value = serde_json::from_str(&json).unwrap();
    let r = &doc["domains"][0];
    assert_eq!(r["route"], "implicit_mx");
    assert_eq!(r["spf_check"]["status"], "temperror", "{r:#}");
    assert!(
        r["spf_check"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("x.dead.test")),
        "{r:#}"
    );
    assert_eq!(r["exit"], 75);
    // The DMARC tree walk's look-up of the organizational domain fails: a retry, not "no
    // policy".
    let (code, json) = mdig(&dns, &["--json", "sub.org.test"]);
    assert_eq!(code, 75, "{json}");
    let doc: Value = serde_json::from_str(&json).unwrap();
    let r = &doc["domains"][0];
    assert!(r["dmarc_policy"].is_null(), "{r:#}");
    assert!(
        r["problems"][0]
            .as_str()
            .is_some_and(|p| p.starts_with("TXT look-up of _dmarc.org.test failed")),
        "{r:#}"
    );
}
